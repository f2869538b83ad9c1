#!/usr/bin/env bash
# Fuzzes the payment decoder, the lists' values and the lists' item routes, each for longer than the
# test command does: FUZZTIME=10m scripts/fuzz.sh (the stack's Redis must be up: scripts/stack.sh up)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime "${FUZZTIME:-10m}" -fuzzminimizetime 10s ./internal/payment
go test -run '^$' -fuzz '^FuzzNormalize$' -fuzztime "${FUZZTIME:-10m}" -fuzzminimizetime 10s ./internal/lists
go test -run '^$' -fuzz '^FuzzListItemPath$' -fuzztime "${FUZZTIME:-10m}" -fuzzminimizetime 10s ./internal/api
