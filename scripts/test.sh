#!/usr/bin/env bash
# Runs every test: gofmt, go vet and go mod tidy, the unit tests with the race detector, a short
# fuzz of the payment decoder, and the end-to-end tests against the real local stack, which it
# starts with scripts/stack.sh up and scripts/stack.sh cluster (installing Kafka, Redis and kcat
# first if they are missing);
# the model's tests load ONNX Runtime, which scripts/onnxruntime.sh fetches (npm).
#
#   scripts/test.sh --stress   the tests under load instead: one busy loop per core, started here
#                              and stopped on exit, while the unit tests run 20 times each with the
#                              race detector and then the end-to-end tests run three times.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage="usage: scripts/test.sh [--stress]"
stress=false
case "$#:${1:-}" in
  0:) ;;
  1:--stress) stress=true ;;
  1:-h | 1:--help) echo "$usage"; exit 0 ;;
  *) echo "$usage" >&2; exit 2 ;;
esac

scripts/stack.sh up
scripts/stack.sh cluster # the Redis Cluster of e2e/cluster_test.go
# ONNX Runtime for the model's tests, from the onnxruntime-node npm package (cached in .cache/).
FD_ORT_LIBRARY=$(scripts/onnxruntime.sh)
export FD_ORT_LIBRARY

# e2e runs the end-to-end tests once with the time limit $2, showing what the tests log (-v:
# figures such as crash duplicates); the full output is kept in the log file $1.
e2e() {
  local log=$1 status=0
  go test -count=1 -timeout "$2" -v ./e2e/... >"$log" 2>&1 || status=$?
  grep -E '^(=== RUN|--- |    |PASS|FAIL|ok |panic)' "$log" || true
  [ $status -eq 0 ] || echo "e2e failed; full output in $log"
  return $status
}

if $stress; then
  hogs=()
  stop_hogs() { [ ${#hogs[@]} -eq 0 ] || kill "${hogs[@]}" 2>/dev/null || true; }
  trap stop_hogs EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  cores=$(nproc)
  for _ in $(seq "$cores"); do
    sh -c 'while :; do :; done' &
    hogs+=($!)
  done
  echo "== stress: $cores busy loops (pids ${hogs[*]}) keep every core busy"

  echo "== unit tests, 20 times each (race detector)"
  go test -race -count=20 -timeout 60m ./cmd/... ./internal/...

  failed=0
  for run in 1 2 3; do
    echo "== end-to-end tests on the real stack, run $run of 3"
    e2e "${TMPDIR:-/tmp}/fraud-detector-e2e-stress-$run.log" 40m || failed=$((failed + 1))
  done
  [ $failed -eq 0 ] || { echo "stress: $failed of 3 end-to-end runs failed"; exit 1; }
  echo "stress: passed"
  exit 0
fi

echo "== gofmt, go vet, go mod tidy"
unformatted=$(gofmt -l cmd internal e2e)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
status=0
tidy=$(go mod tidy -diff) || status=$?
if [ $status -ne 0 ]; then
  if [ -n "$tidy" ]; then
    echo "go.mod and go.sum are not tidy; run go mod tidy and commit the result. It would change:"
    echo "$tidy"
  else
    echo "go mod tidy -diff failed (exit $status)"
  fi
  exit 1
fi

echo "== unit tests (race detector)"
go test -race -count=1 ./cmd/... ./internal/...

echo "== training tests (Python: float32 thresholds, nothing written unchecked, the handbook's features and protocol)"
"$(scripts/python.sh)" -m unittest discover -s training

echo "== fuzz the payment decoder (${FUZZTIME:=15s}; longer: FUZZTIME=10m scripts/fuzz.sh)"
go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime "$FUZZTIME" -fuzzminimizetime 5s ./internal/payment

echo "== fuzz the lists' values and item routes (10s each)"
go test -run '^$' -fuzz '^FuzzNormalize$' -fuzztime 10s -fuzzminimizetime 5s ./internal/lists
go test -run '^$' -fuzz '^FuzzListItemPath$' -fuzztime 10s -fuzzminimizetime 5s ./internal/api

echo "== fuzz the review and lists API from its OpenAPI document (schemathesis)"
scripts/api-fuzz.sh

echo "== end-to-end tests on the real stack"
e2e "${TMPDIR:-/tmp}/fraud-detector-e2e.log" 20m
