# The README's commands; the scripts they call are where the work is.
.PHONY: test train retrain benchmark-model bench demo

test:
	scripts/test.sh

train:
	scripts/train.sh

# Flags for fraud-detector retrain: make retrain ARGS='-out /tmp/candidate.onnx'
retrain:
	scripts/retrain.sh $(ARGS)

# This project's model beside the Fraud Detection Handbook's baselines: SEEDS="1 2 3"
benchmark-model:
	scripts/benchmark-model.sh

bench:
	scripts/bench.sh

demo:
	scripts/demo.sh
