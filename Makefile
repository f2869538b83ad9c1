# The README's commands; the scripts they call are where the work is.
.PHONY: test train retrain bench demo

test:
	scripts/test.sh

train:
	scripts/train.sh

# Flags for fraud-detector retrain: make retrain ARGS='-out /tmp/candidate.onnx'
retrain:
	scripts/retrain.sh $(ARGS)

bench:
	scripts/bench.sh

demo:
	scripts/demo.sh
