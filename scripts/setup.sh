#!/usr/bin/env bash
# Create .venv (if needed) and install shadowlane with everything tests and the demo use.
# Idempotent; re-running only installs what changed. Usage: scripts/setup.sh [extra]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EXTRA=${1:-test}
PY=${PYTHON:-python3}
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PY" -m venv "$ROOT/.venv"
  "$ROOT/.venv/bin/pip" install -q --upgrade pip wheel
fi
"$ROOT/.venv/bin/pip" install -q -e "$ROOT[$EXTRA]"
