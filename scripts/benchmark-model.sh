#!/usr/bin/env bash
# The model benchmark (make benchmark-model): for each seed, simulate the Fraud Detection
# Handbook's world (paygen -world=handbook) and the project's world (paygen -world), compute the
# service's features over them with fraud-detector replay against a real Redis, then train and
# test this project's model and the handbook's logistic regression and random forest on the same
# rows by the book's protocol (training/benchmark.py). The table goes to standard output and into
# training/REPORT.md's benchmark section. About 15 minutes on 2 cores for three seeds.
#   SEEDS="1 2 3" scripts/benchmark-model.sh
#   REUSE=1 scripts/benchmark-model.sh    # keep the simulated worlds and features already made
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seeds=${SEEDS:-1 2 3}
dir=.cache/benchmark
mkdir -p "$dir" .cache/bin
python=$(scripts/python.sh)
scripts/stack.sh redis # the card state of the replays, each under a key prefix of its own
redis=127.0.0.1:${REDIS_PORT:-6379}
go build -o .cache/bin/paygen ./cmd/paygen
go build -o .cache/bin/fraud-detector ./cmd/fraud-detector
export FRAUD_CARD_HMAC_KEY=${FRAUD_CARD_HMAC_KEY:-training-replay-key-not-a-secret}

features() { # world directory, paygen's world flag, seed
  local d=$1 world=$2 seed=$3
  mkdir -p "$d"
  if [ "${REUSE:-}" = 1 ] && [ -s "$d/features.csv" ]; then return; fi
  echo "benchmark-model: $d: simulating" >&2
  .cache/bin/paygen "$world" -seed "$seed" -out "$d/payments.jsonl" -labels "$d/labels.jsonl"
  echo "benchmark-model: $d: features (fraud-detector replay)" >&2
  # The replay's report goes to a log: only its timing is shown, unless it fails.
  .cache/bin/fraud-detector replay -model none -redis "$redis" -in "$d/payments.jsonl" -labels "$d/labels.jsonl" \
    -out "$d/features.csv.tmp" 2> "$d/replay.log" || { cat "$d/replay.log" >&2; exit 1; }
  grep -E '^replay: [0-9]+ payments in' "$d/replay.log" >&2
  mv "$d/features.csv.tmp" "$d/features.csv"
}
for s in $seeds; do
  features "$dir/handbook-$s" -world=handbook "$s"
  features "$dir/project-$s" -world "$s"
done
# shellcheck disable=SC2086
"$python" training/benchmark.py --dir "$dir" --seeds $seeds --report training/REPORT.md
