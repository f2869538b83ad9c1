#!/usr/bin/env bash
# Draws docs/dashboard.png from a real run: the embedded demo (scripts/demo.sh) runs for
# DURATION (default 90s) at RATE payments/s (default 300), with BURST payments/s (default 3000)
# for 10 s of every minute (from the 30th second), while cmd/metricschart scrapes its /metrics every 2 s and
# draws the dashboard's panels. Writes OUT (default docs/dashboard.png).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
duration=${DURATION:-90s}
out=${OUT:-docs/dashboard.png}
mkdir -p .cache/bin .cache/demo "$(dirname "$out")"
scripts/onnxruntime.sh >/dev/null
go build -o .cache/bin/fraud-detector ./cmd/fraud-detector
go build -o .cache/bin/metricschart ./cmd/metricschart
port=18080
.cache/bin/fraud-detector demo -listen 127.0.0.1:$port -rate "${RATE:-300}" -burst "${BURST:-3000}" -summary 10s >.cache/demo/dashboard-run.txt 2>&1 &
demo=$!
trap 'kill -INT $demo 2>/dev/null || true; wait $demo 2>/dev/null || true' EXIT
until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
  kill -0 $demo 2>/dev/null || { cat .cache/demo/dashboard-run.txt; exit 1; }
  sleep 0.5
done
.cache/bin/metricschart -url "http://127.0.0.1:$port/metrics" -duration "$duration" -out "$out" \
  -title "fraud-detector demo (embedded: kfake + miniredis, model on), $(nproc) cores, ${RATE:-300}/s with ${BURST:-3000}/s for 10 s a minute; $(date -u +%Y-%m-%d)"
echo "wrote $out"
