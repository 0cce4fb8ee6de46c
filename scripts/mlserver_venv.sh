#!/usr/bin/env bash
# Install Seldon's MLServer (a real Open Inference Protocol server) into its own venv,
# .venv-mlserver, for the upstream tests. It cannot share .venv: mlserver 1.7 pins
# starlette<0.47 / fastapi<0.116, older than the proxy needs. uvloop is held below 0.22 because
# MLServer's worker fails to start on uvloop 0.23 ("There is no current event loop").
# Idempotent: prints the venv's python path and exits at once when it is already complete.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV="$ROOT/.venv-mlserver"
# Same interpreter as the project's .venv (what setup.sh used), else python3.
BASE=$("$ROOT/.venv/bin/python" -c 'import sys; print(sys._base_executable)' 2>/dev/null || true)
PY=${PYTHON:-${BASE:-python3}}
if [ -x "$VENV/bin/mlserver" ] && [ -f "$VENV/.complete" ]; then echo "$VENV/bin/python"; exit 0; fi
# Two test runs at once would delete and build the venv under each other: one builds, the other
# waits and then finds it complete.
mkdir -p "$VENV-lock"  # a directory: .gitignore's `.venv-*/` covers it
exec 9>"$VENV-lock/lock"
flock 9
if [ -x "$VENV/bin/mlserver" ] && [ -f "$VENV/.complete" ]; then echo "$VENV/bin/python"; exit 0; fi
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip >&2
"$VENV/bin/pip" install -q "mlserver==1.7.1" "mlserver-sklearn==1.7.1" "uvloop<0.22" >&2
touch "$VENV/.complete"
echo "$VENV/bin/python"
