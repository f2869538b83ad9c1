#!/usr/bin/env bash
# Fuzzes the payment decoder for longer than the test command does: FUZZTIME=10m scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime "${FUZZTIME:-10m}" -fuzzminimizetime 10s ./internal/payment
