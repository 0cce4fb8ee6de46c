#!/usr/bin/env bash
# Tools the benchmark suite (bench/) uses; not needed by the test suite. Idempotent.
#   wrk   - closed-loop saturation load generator (Debian's package; wrk2 is not packaged)
#   nginx - the native proxy_pass / mirror baselines
# plus the `bench` extra (granian as the second ASGI server, py-spy for profiling).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# bench (issue 6): wrk + nginx from Debian
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx
fi
"$ROOT/.venv/bin/pip" install -q -e "$ROOT[bench]"
