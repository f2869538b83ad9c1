#!/usr/bin/env bash
# The README's first command: the whole pipeline in one process, on a machine with only Go.
# An in-process Kafka-protocol cluster (kfake) and an in-process Redis (miniredis) stand in for
# the real ones; a generator writes payments; the service decides on them with the same code as
# in production and serves the review API and /metrics. Flagged payments and a summary are
# printed as they come; Ctrl-C stops everything (exit 0).
#
# The model runs on ONNX Runtime, which scripts/onnxruntime.sh fetches from npm; without npm
# the demo runs on the rules and the windows alone, and says so.
# Flags go to `fraud-detector demo` (-rate, -listen, -summary, -show, -log; -h lists them).
# The same on the real stack (Kafka and Redis as processes): scripts/demo-stack.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mkdir -p .cache/bin .cache/demo
if ! scripts/onnxruntime.sh >/dev/null 2>.cache/demo/onnxruntime.log; then
  echo "demo: could not fetch ONNX Runtime (see .cache/demo/onnxruntime.log); the model is left out" >&2
fi
version=$(git describe --always --dirty 2>/dev/null || echo dev)
echo "demo: building fraud-detector (a first build compiles its dependencies: about a minute on 2 cores)" >&2
go build -ldflags "-X main.version=$version" -o .cache/bin/fraud-detector ./cmd/fraud-detector
exec .cache/bin/fraud-detector demo "$@"
