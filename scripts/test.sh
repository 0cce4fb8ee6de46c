#!/usr/bin/env bash
# One command on a fresh machine: install, fetch Kafka's jars, run the whole test suite.
# Tests start what they need (Kafka via scripts/kafka.sh, MLflow on sqlite, uvicorn on loopback).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
"$ROOT/scripts/setup.sh" test
if [ -x "$ROOT/scripts/kafka.sh" ]; then
  "$ROOT/scripts/kafka.sh" fetch   # download once into .kafka/ (Maven Central), cached after
fi
set +e
"$ROOT/.venv/bin/python" -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when it collected nothing: that is a failure of the suite, say so plainly.
if [ "$rc" -eq 5 ]; then echo "test.sh: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
