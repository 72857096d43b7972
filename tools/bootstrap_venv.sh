#!/usr/bin/env bash
# Creates .venv and installs requirements.txt when the venv is missing or was built
# from a different requirements.txt (compared by SHA-256, so a fresh clone's file
# times do not matter). A second run with the same requirements does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
want=$(sha256sum requirements.txt | cut -d' ' -f1)
stamp="$VENV/.requirements.sha256"
if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "bootstrap: building $VENV from requirements.txt (a few minutes on first run)" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -qq --upgrade pip
"$VENV/bin/python" -m pip install -qq -r requirements.txt
"$VENV/bin/python" -m pip check
echo "$want" > "$stamp"
echo "bootstrap: $VENV ready" >&2
