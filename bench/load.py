"""Load generator drivers, each pinned to the generator's CPU (the server gets the other one).

- `saturate`: wrk (Debian's 4.1.0, one thread, keep-alive, closed loop) with a Lua script that
  cycles through precomputed POST bodies with many `x-user-id`s; it measures the most a server
  can do and the latency at that point. wrk is C + LuaJIT and needs a fraction of a core at the
  rates a Python server reaches, so it is not the bottleneck (the generator CPU is reported).
- `fixed_rate`: bench/openloop.py at a constant offered rate, latency corrected for coordinated
  omission (wrk2's method; wrk2 is not packaged for Debian).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.payloads import BenchRequest, lua_string, make_requests

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python")
GEN_CPU = "1"

_LUA_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"non_2xx":%d,"connect_errors":%d,"read_errors":%d,'
    .. '"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
"""


def wrk_script(reqs: list[BenchRequest]) -> str:
    """A wrk Lua script that replays `reqs` round-robin (formatted once per thread)."""
    rows = ",\n".join(
        "{" + lua_string(r.path.encode()) + "," + lua_string(r.headers[0][1].encode()) + ","
        + lua_string(r.body) + "}" for r in reqs)
    return (
        "local data = {\n" + rows + "\n}\n"
        "local reqs = {}\nlocal i = 0\n"
        "init = function(args)\n"
        "  for k, d in ipairs(data) do\n"
        "    reqs[k] = wrk.format('POST', d[1], {['Content-Type'] = 'application/json', ['x-user-id'] = d[2]}, d[3])\n"
        "  end\nend\n"
        "request = function()\n  i = i % #reqs + 1\n  return reqs[i]\nend\n" + _LUA_DONE)


class Wrk:
    """wrk with a request script written once per payload kind."""

    def __init__(self, *, model: str = "credit", mix_invocations: float = 0.0) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="bench-wrk-")
        self.script = Path(self._dir.name) / "post.lua"
        self.script.write_text(wrk_script(make_requests(512, model=model, mix_invocations=mix_invocations)))

    def run(self, port: int, *, duration_s: float, connections: int = 16, timeout_s: float = 5) -> dict[str, Any]:
        cmd = ["taskset", "-c", GEN_CPU, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
               f"--timeout={timeout_s}s", "-s", str(self.script), f"http://127.0.0.1:{port}/"]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 30)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed (rc {proc.returncode}): {proc.stderr.strip() or proc.stdout[-500:]}")
        res = json.loads(line[len("WRKJSON "):])
        res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
        res["wall_s"] = time.monotonic() - t0
        res["generator"] = f"wrk -t1 -c{connections} (closed loop)"
        return res


def fixed_rate(port: int, *, rate: float, duration_s: float, warmup_s: float = 1.0, connections: int = 32,
               model: str = "credit", mix_invocations: float = 0.0) -> dict[str, Any]:
    """One open-loop run at `rate` requests/s (bench/openloop.py, pinned to the generator CPU)."""
    cmd = ["taskset", "-c", GEN_CPU, PY, str(ROOT / "bench" / "openloop.py"), "--port", str(port),
           "--rate", f"{rate:.1f}", "--duration", str(duration_s), "--warmup", str(warmup_s),
           "--connections", str(connections), "--model", model, "--mix-invocations", str(mix_invocations)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + warmup_s + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"openloop failed (rc {proc.returncode}): {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":  # quick manual check: python -m bench.load PORT
    port = int(sys.argv[1])
    print(Wrk().run(port, duration_s=3))
    print(fixed_rate(port, rate=1000, duration_s=3))
