#!/usr/bin/env bash
# Runs every test: gofmt and go vet, the unit tests with the race detector, a short fuzz of the
# payment decoder, and the end-to-end tests against the real local stack, which it starts with
# scripts/stack.sh up (installing Kafka, Redis and kcat first if they are missing); the model's
# tests load ONNX Runtime, which scripts/onnxruntime.sh fetches (npm).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/stack.sh up
# ONNX Runtime for the model's tests, from the onnxruntime-node npm package (cached in .cache/).
FD_ORT_LIBRARY=$(scripts/onnxruntime.sh)
export FD_ORT_LIBRARY

echo "== gofmt, go vet"
unformatted=$(gofmt -l cmd internal e2e)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...

echo "== unit tests (race detector)"
go test -race -count=1 ./cmd/... ./internal/...

echo "== fuzz the payment decoder (${FUZZTIME:=15s}; longer: FUZZTIME=10m scripts/fuzz.sh)"
go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime "$FUZZTIME" -fuzzminimizetime 5s ./internal/payment

echo "== fuzz the review API from its OpenAPI document (schemathesis)"
scripts/api-fuzz.sh

echo "== end-to-end tests on the real stack"
# -v shows the figures the tests log (crash duplicates); the full output is kept in the log file.
log=${TMPDIR:-/tmp}/fraud-detector-e2e.log
status=0
go test -count=1 -timeout 20m -v ./e2e/... >"$log" 2>&1 || status=$?
grep -E '^(=== RUN|--- |    |PASS|FAIL|ok |panic)' "$log" || true
[ $status -eq 0 ] || echo "e2e failed; full output in $log"
exit $status
