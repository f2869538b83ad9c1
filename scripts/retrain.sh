#!/usr/bin/env bash
# Retrains the model from what the service saw and what the analysts decided (make retrain):
# builds fraud-detector and runs `fraud-detector retrain` with the service's configuration
# (FRAUD_CONFIG, else configs/config.yaml; FRAUD_* variables override it as for the service:
# brokers, TLS, SASL, topics, the card key, model.path) and the training environment's python
# (scripts/python.sh makes it once). Flags given are passed on:
#   scripts/retrain.sh                                   write model.path: a running service swaps it in
#   scripts/retrain.sh -out /tmp/candidate.onnx          a candidate, to check before promoting it
#   make retrain ARGS='-out /tmp/candidate.onnx -label-delay 336h'
# It reads the payments and labels topics from their oldest records to their ends; the work files
# go to .cache/retrain (-work). See docs/retraining.md, and fraud-detector retrain -h for every flag.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=$(scripts/python.sh)
mkdir -p .cache/bin
go build -o .cache/bin/fraud-detector ./cmd/fraud-detector
exec .cache/bin/fraud-detector retrain -config "${FRAUD_CONFIG:-configs/config.yaml}" -python "$python" "$@"
