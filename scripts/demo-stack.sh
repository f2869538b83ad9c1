#!/usr/bin/env bash
# The whole pipeline on the real local stack: starts Kafka and Redis (scripts/stack.sh up), the
# fraud-detector service and the payment generator, and prints flagged payments as they arrive.
# Ctrl-C stops the service and the generator; the stack keeps running (scripts/stack.sh down).
#
# Settings (environment): RATE (payments/s, 50), and any FRAUD_* setting of configs/config.yaml.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/stack.sh up
mkdir -p .cache/bin .cache/demo
scripts/onnxruntime.sh >/dev/null # the model runs on ONNX Runtime
go build -o .cache/bin/fraud-detector ./cmd/fraud-detector
go build -o .cache/bin/paygen ./cmd/paygen

# A key for the demo only: a real deployment sets its own secret (see configs/config.yaml).
export FRAUD_CARD_HMAC_KEY=${FRAUD_CARD_HMAC_KEY:-demo-only-card-key-not-a-secret}
export FRAUD_KAFKA_BROKERS=${FRAUD_KAFKA_BROKERS:-127.0.0.1:${KAFKA_PORT:-9092}}

.cache/bin/fraud-detector >.cache/demo/service.log 2>&1 &
svc=$!
.cache/bin/paygen -brokers "$FRAUD_KAFKA_BROKERS" -rate "${RATE:-50}" -n 0 -malformed 0.01 -bursts 0.02 -cards 5000 -seed "$(date +%s)" >.cache/demo/paygen.log 2>&1 &
gen=$!
stop() {
  trap - INT TERM EXIT
  kill "$gen" "$svc" 2>/dev/null || true
  wait "$gen" "$svc" 2>/dev/null || true
  echo
  echo "stopped the service and the generator; logs in .cache/demo/. The stack still runs: scripts/stack.sh down"
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

cat <<MSG
fraud-detector runs (pid $svc, log .cache/demo/service.log); paygen writes ${RATE:-50} payments/s
(1 % malformed, to payments-dlq). Flagged payments from high-risk-payments follow; Ctrl-C stops.

MSG
# kcat prints each decision; a line of Python (when there is one) makes it a readable summary.
show='import json, sys
for line in sys.stdin:
    try:
        d = json.loads(line)
    except ValueError:
        continue
    p = d["payment"]
    why = "; ".join(r["detail"] for r in d["reasons"])
    print("%s  %-22s card %-16s %10s %s  %s" % (d["decided_at"][11:23], d["payment_id"],
          d["card_id"][:16], p["amount"], p["currency"], why), flush=True)'
if command -v python3 >/dev/null; then
  kcat -C -b "$FRAUD_KAFKA_BROKERS" -t high-risk-payments -o end -u -q -f '%s\n' | python3 -u -c "$show" || true
else
  kcat -C -b "$FRAUD_KAFKA_BROKERS" -t high-risk-payments -o end -u -q -f '%s\n' || true
fi
