# The README's commands; the scripts they call are where the work is.
.PHONY: test train bench demo

test:
	scripts/test.sh

train:
	scripts/train.sh

bench:
	scripts/bench.sh

demo:
	scripts/demo.sh
