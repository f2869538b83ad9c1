#!/usr/bin/env bash
# Reproduces the shipped model end to end (make train): simulate two worlds of labelled payments,
# the project's (paygen -world: eight weeks, 10,000 cards) and the Fraud Detection Handbook's
# (paygen -world=handbook, its first ten weeks), compute their features with the service's own
# code (fraud-detector replay, with the card state in a local Redis that scripts/stack.sh starts),
# train one LightGBM model on the earlier weeks of both and export ONNX to configs/model.onnx
# with a report in training/REPORT.md, which says how the model does on each world's last two
# weeks. Nothing needs to run beforehand.
#   SEED=1 scripts/train.sh
# To train on your own payments: make retrain (docs/retraining.md), or fraud-detector replay -in
# yours.jsonl -labels yours.labels.jsonl -out features.csv, then training/train.py --features
# features.csv (see the README).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seed=${SEED:-1}
dir=.cache/train
mkdir -p "$dir" .cache/bin
python=$(scripts/python.sh)
scripts/stack.sh redis
redis=127.0.0.1:${REDIS_PORT:-6379}
go build -o .cache/bin/paygen ./cmd/paygen
go build -o .cache/bin/fraud-detector ./cmd/fraud-detector
# The card key only turns card numbers into ids; paygen's worlds send card ids.
export FRAUD_CARD_HMAC_KEY=${FRAUD_CARD_HMAC_KEY:-training-replay-key-not-a-secret}
for world in project handbook; do
  flag=-world days=56
  [ "$world" = handbook ] && flag=-world=handbook days=70
  echo "train: simulating the $world world (seed $seed)" >&2
  .cache/bin/paygen "$flag" -days "$days" -seed "$seed" -out "$dir/$world.payments.jsonl" -labels "$dir/$world.labels.jsonl"
  echo "train: computing the $world world's features with fraud-detector replay" >&2
  # The replay's report goes to a log: only its timing is shown, unless it fails.
  .cache/bin/fraud-detector replay -model none -redis "$redis" -in "$dir/$world.payments.jsonl" \
    -labels "$dir/$world.labels.jsonl" -out "$dir/$world.features.csv" 2> "$dir/$world.replay.log" ||
    { cat "$dir/$world.replay.log" >&2; exit 1; }
  grep -E '^replay: [0-9]+ payments in' "$dir/$world.replay.log" >&2
done
echo "train: training" >&2
"$python" training/train.py --features "project=$dir/project.features.csv" --features "handbook=$dir/handbook.features.csv" \
  --out configs/model.onnx --report training/REPORT.md --parity internal/model/testdata/parity.csv
