#!/usr/bin/env bash
# Fuzzes the API (reviews, cases, lists, scoring) from its OpenAPI document with schemathesis (PyPI): generated and
# malformed requests to every endpoint, as an analyst; it fails on any 5xx, a crash, or a response
# that breaks the document. Starts the stack and a service of its own on a free port. Left out:
# the check that every schema-valid request is accepted, since a cursor is an opaque token of an
# earlier page, which a schema cannot describe (a made-up one gets 400).
#   EXAMPLES=200 scripts/api-fuzz.sh      (scripts/test.sh runs it with the default, 50 an operation)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/stack.sh up >/dev/null
venv=.cache/venv-api
want=$(sha256sum scripts/apifuzz/requirements.txt | cut -d' ' -f1)
if [[ ! -x "$venv/bin/schemathesis" || "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]]; then
  echo "api-fuzz: installing schemathesis into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/apifuzz/requirements.txt >&2
  echo "$want" >"$venv/.requirements.sha256"
fi
export FRAUD_MODEL_ONNXRUNTIME_LIBRARY=$(scripts/onnxruntime.sh)
mkdir -p .cache/bin
go build -o .cache/bin/fraud-detector ./cmd/fraud-detector
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token=api-fuzz-analyst-token-$RANDOM$RANDOM
scorer=api-fuzz-scorer-token-$RANDOM$RANDOM
prefix=apifuzz-$RANDOM
log=${TMPDIR:-/tmp}/fraud-detector-api-fuzz.log
FRAUD_CARD_HMAC_KEY=api-fuzz-card-key-0123456789 FRAUD_API_LISTEN=127.0.0.1:$port \
  FRAUD_API_TOKENS="fuzz:analyst:$(printf %s "$token" | sha256sum | cut -d' ' -f1),fuzz-scorer:scorer:$(printf %s "$scorer" | sha256sum | cut -d' ' -f1)" \
  FRAUD_KAFKA_GROUP=$prefix FRAUD_WINDOW_KEY_PREFIX=$prefix FRAUD_REVIEW_KEY_PREFIX=$prefix \
  FRAUD_LISTS_KEY_PREFIX=$prefix \
  FRAUD_KAFKA_INITIAL_OFFSET=newest \
  .cache/bin/fraud-detector >"$log" 2>&1 &
svc=$!
trap 'kill $svc 2>/dev/null; wait $svc 2>/dev/null; redis-cli --scan --pattern "$prefix:*" | xargs -r redis-cli del >/dev/null' EXIT
status=0
# As an analyst every route but scoring; as a scorer, scoring.
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/v1/openapi.json" --wait-for-schema 30 \
  -H "Authorization: Bearer $token" --checks all -n "${EXAMPLES:-50}" --generation-deterministic \
  --exclude-checks positive_data_acceptance --exclude-path-regex '^/v1/score' \
  --request-timeout 5 || status=$?
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/v1/openapi.json" --wait-for-schema 30 \
  -H "Authorization: Bearer $scorer" --checks all -n "${EXAMPLES:-50}" --generation-deterministic \
  --exclude-checks positive_data_acceptance --include-path-regex '^/v1/score' \
  --request-timeout 5 || status=$?
if ! kill -0 $svc 2>/dev/null; then
  echo "api-fuzz: the service died; its log: $log" >&2
  status=1
fi
exit $status
