#!/usr/bin/env bash
# One command on a fresh machine: install, then run the demo on the embedded default (no Kafka).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/scripts/setup.sh" test
exec "$ROOT/.venv/bin/shadowlane" demo "$@"
