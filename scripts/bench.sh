#!/usr/bin/env bash
# Benchmarks the service on the local stack: drain rate of a pre-loaded backlog and decision latency
# at a fixed input rate. Flags go to cmd/streambench, e.g.
#   scripts/bench.sh -n 2000000 -rate 5000 -duration 30s -cpuprofile /tmp/drain.prof
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/stack.sh up
mkdir -p .cache/bin
scripts/onnxruntime.sh >/dev/null # the model runs on ONNX Runtime
go build -o .cache/bin/fraud-detector ./cmd/fraud-detector
go run ./cmd/streambench -brokers "127.0.0.1:${KAFKA_PORT:-9092}" -redis "127.0.0.1:${REDIS_PORT:-6379}" \
  -bin .cache/bin/fraud-detector "$@"
