#!/usr/bin/env bash
# Makes the training pipeline's Python environment in .cache/venv from training/requirements.txt
# (PyPI), once per change of that file, and prints the path of its python.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=.cache/venv
stamp="$venv/.requirements.sha256"
want=$(sha256sum training/requirements.txt | cut -d' ' -f1)
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  command -v python3 >/dev/null || { echo "python: python3 is needed (apt-get install python3 python3-venv)" >&2; exit 1; }
  echo "python: installing training/requirements.txt into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r training/requirements.txt >&2
  echo "$want" >"$stamp"
fi
echo "$PWD/$venv/bin/python"
