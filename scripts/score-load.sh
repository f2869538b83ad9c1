#!/usr/bin/env bash
# Load test of POST /v1/score with an independent load generator, vegeta (Go module proxy,
# pinned): the service on the local stack (Kafka and Redis beside it, the shipped model), each
# request a distinct payment from paygen (timestamps now), at fixed rates; prints vegeta's report
# of each rate. Needs the stack's ports free or its stack running (scripts/stack.sh up).
#   scripts/score-load.sh                      2,000/s for 30 s, then 1,000 to 6,000/s by 1,000, 15 s each
#   RATES="2000 4000" DURATION=20s scripts/score-load.sh      (DURATION in seconds, such as 20s)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/stack.sh up >/dev/null
export FRAUD_MODEL_ONNXRUNTIME_LIBRARY=$(scripts/onnxruntime.sh)
mkdir -p .cache/bin .cache/score-load
go build -o .cache/bin/fraud-detector ./cmd/fraud-detector
vegeta="go run github.com/tsenart/vegeta/v12@v12.13.0"
$vegeta -version >/dev/null 2>&1 || true # fetch and build it once, outside the measurement

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token=score-load-token-$RANDOM$RANDOM
prefix=scoreload-$RANDOM
log=$work/service.log
FRAUD_CARD_HMAC_KEY=score-load-card-key-0123456789 FRAUD_API_LISTEN=127.0.0.1:$port \
  FRAUD_API_TOKENS="load:scorer:$(printf %s "$token" | sha256sum | cut -d' ' -f1)" \
  FRAUD_KAFKA_GROUP=$prefix FRAUD_WINDOW_KEY_PREFIX=$prefix FRAUD_REVIEW_KEY_PREFIX=$prefix \
  FRAUD_LISTS_KEY_PREFIX=$prefix FRAUD_KAFKA_INITIAL_OFFSET=newest \
  .cache/bin/fraud-detector >"$log" 2>&1 &
svc=$!
trap 'kill $svc 2>/dev/null; wait $svc 2>/dev/null; redis-cli --scan --pattern "$prefix:*" | xargs -r redis-cli del >/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.1
done

# targets writes n vegeta targets (JSON lines), each a distinct payment of 100,000 cards.
targets() { # n seed
  go run ./cmd/paygen -out - -n "$1" -seed "$2" -cards 100000 -card-numbers 0 -start "$(date -u +%Y-%m-%dT%H:%M:%SZ)" |
    python3 -c '
import base64, json, sys
url, tok = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    body = line.strip().encode()
    print(json.dumps({"method": "POST", "url": url, "body": base64.b64encode(body).decode(),
                      "header": {"Authorization": ["Bearer " + tok], "Content-Type": ["application/json"]}}))
' "http://127.0.0.1:$port/v1/score" "$token"
}

attack() { # rate duration seed
  local n=$(( $1 * ${2%s} ))
  targets "$n" "$3" >"$work/targets.json"
  echo "== $1 requests/s for $2"
  $vegeta attack -format json -targets "$work/targets.json" -rate "$1" -duration "$2" -max-workers 512 -timeout 5s \
    >"$work/results.bin"
  $vegeta report -type text <"$work/results.bin" | grep -E 'Requests|Latencies|Success|Status'
  # Answers decided without the card state (degraded_state): past score.timeout, or overloaded.
  $vegeta encode -to json <"$work/results.bin" | python3 -c '
import base64, json, sys
n = d = 0
for line in sys.stdin:
    r = json.loads(line)
    n += 1
    d += b"degraded_state" in base64.b64decode(r.get("body") or "")
print(f"Degraded      {d} of {n} answers")
'
}

attack 2000 "${DURATION:-30s}" 1
seed=2
for rate in ${RATES:-1000 2000 3000 4000 5000 6000}; do
  attack "$rate" 15s $seed
  seed=$((seed + 1))
done
