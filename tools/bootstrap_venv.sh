#!/usr/bin/env bash
# Creates .venv and installs requirements.txt when the venv is missing or was built
# from a different requirements.txt (compared by SHA-256, so a fresh clone's file
# times do not matter). A second run with the same requirements does nothing.
# VENV and REQUIREMENTS choose another venv / requirements file (tools/gpu_bench.sh:
# VENV=.venv-gpu REQUIREMENTS=requirements-gpu.txt); a file it includes with -r
# counts towards the stamp too.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
REQUIREMENTS=${REQUIREMENTS:-requirements.txt}
if [[ "$REQUIREMENTS" == requirements.txt ]]; then
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
else
  want=$(cat "$REQUIREMENTS" requirements.txt | sha256sum | cut -d' ' -f1)
fi
stamp="$VENV/.requirements.sha256"
if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "bootstrap: building $VENV from $REQUIREMENTS (a few minutes on first run)" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -qq --upgrade pip
"$VENV/bin/python" -m pip install -qq -r "$REQUIREMENTS"
"$VENV/bin/python" -m pip check
echo "$want" > "$stamp"
echo "bootstrap: $VENV ready" >&2
