#!/usr/bin/env bash
# Reproduces the shipped model end to end (make train): simulate eight weeks of labelled payments
# (paygen -world), compute their features with the service's own code (fraud-detector replay,
# against an in-process Redis), train LightGBM on the earlier weeks, and export ONNX to
# configs/model.onnx with a report in training/REPORT.md. Nothing needs to run beforehand.
#   SEED=1 scripts/train.sh
# To train on your own payments: fraud-detector replay -in yours.jsonl -labels yours.labels.jsonl
# -out features.csv, then training/train.py --features features.csv (see the README).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seed=${SEED:-1}
dir=.cache/train
mkdir -p "$dir" .cache/bin
python=$(scripts/python.sh)
go build -o .cache/bin/paygen ./cmd/paygen
go build -o .cache/bin/fraud-detector ./cmd/fraud-detector
echo "train: simulating payments (seed $seed)" >&2
.cache/bin/paygen -world -seed "$seed" -out "$dir/payments.jsonl" -labels "$dir/labels.jsonl"
echo "train: computing features with fraud-detector replay" >&2
# The card key only turns card numbers into ids; paygen -world sends card ids.
FRAUD_CARD_HMAC_KEY=${FRAUD_CARD_HMAC_KEY:-training-replay-key-not-a-secret} \
  .cache/bin/fraud-detector replay -model none -in "$dir/payments.jsonl" -labels "$dir/labels.jsonl" -out "$dir/features.csv"
echo "train: training" >&2
"$python" training/train.py --features "$dir/features.csv" --out configs/model.onnx \
  --report training/REPORT.md --parity internal/model/testdata/parity.csv
