"""Latency the proxy adds in upstream mode, next to nginx as the native peer, in one run.

Targets, all serving `POST /v2/models/credit/infer` of the demo credit model:

  direct               client → upstream (bench/oip_upstream.py: uvicorn + onnxruntime)
  shadowlane           client → shadowlane (http champion) → upstream
  shadowlane+shadow    same, plus an http shadow on a second upstream (after the response)
  nginx                client → nginx proxy_pass (keep-alive upstream pool) → upstream
  nginx+mirror         same, plus nginx `mirror` of every request to the second upstream (204)

An open-loop generator sends at fixed request rates (latency counted from each request's
scheduled time, so a stall is not hidden by the generator waiting), the targets interleaved per
rate. "added" = target p50/p99 minus direct's at the same rate. Target of issue 3: shadowlane's
added p50 ≤ 2× nginx's added p50.

    scripts/install_bench_tools.sh      # nginx from Debian, once
    .venv/bin/python bench/upstream_overhead.py [--rates 200 500 1000] [--seconds 4] [--rounds 3]
    .venv/bin/python bench/upstream_overhead.py --sequential 1000 --lean   # one request at a time
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.http_clients import free_port, pinned, start_upstream, wait_port  # noqa: E402
from proxy.codecs_upstream import encode_oip_request  # noqa: E402
from proxy.upstream_client import UpstreamClient  # noqa: E402
from shadowlane.demo_models import synth_applicants  # noqa: E402

PATH = "/v2/models/credit/infer"
HEADERS = [("content-type", "application/json")]

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  upstream model {{ server 127.0.0.1:{up}; keepalive 64; }}
  upstream mirror_model {{ server 127.0.0.1:{up2}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{plain};
    location / {{ proxy_pass http://model; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
  server {{
    listen 127.0.0.1:{mirror};
    location / {{
      mirror /_mirror; mirror_request_body on;
      proxy_pass http://model; proxy_http_version 1.1; proxy_set_header Connection "";
    }}
    # the receiver answers 204 without a body, so nginx keeps its mirror connections alive
    location = /_mirror {{
      internal; proxy_pass http://mirror_model/mirror$request_uri;
      proxy_http_version 1.1; proxy_set_header Connection "";
    }}
  }}
}}
"""


def start_nginx(work: Path, up: int, up2: int) -> tuple[subprocess.Popen | None, int, int]:
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if exe is None:
        print("nginx not installed (scripts/install_bench_tools.sh): skipping the nginx rows", file=sys.stderr)
        return None, 0, 0
    plain, mirror = free_port(), free_port()
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(d=work, up=up, up2=up2, plain=plain, mirror=mirror))
    proc = subprocess.Popen(pinned([exe, "-c", str(conf), "-p", str(work), "-e", str(work / "error.log")], 1))
    wait_port(plain, proc)
    wait_port(mirror, proc)
    return proc, plain, mirror


def start_shadowlane(work: Path, up: int, up2: int, *, shadow: bool) -> tuple[subprocess.Popen, int]:
    backend = {"type": "http", "url": f"http://127.0.0.1:{up}", "remote_model": "credit"}
    models = {"credit-v1": {"name": "credit", "version": 1, "backend": backend}}
    endpoint: dict = {"champion": "credit-v1"}
    if shadow:
        models["credit-v2"] = {"name": "credit", "version": 2,
                               "backend": {**backend, "url": f"http://127.0.0.1:{up2}"}}
        endpoint["shadows"] = [{"model": "credit-v2", "fraction": 1.0}]
    cfg = {"sink": {"type": "file", "directory": str(work / f"log-{shadow}")} if shadow else {"type": "none"},
           "models": models, "endpoints": {"credit": endpoint}}
    path = work / f"deploy-{shadow}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(pinned([sys.executable, "-m", "shadowlane", "serve", "--config", str(path),
                                    "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], 1),
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(work / f"proxy-{shadow}.log", "wb"))
    wait_port(port, proc)
    return proc, port


async def open_loop(port: int, bodies: list[bytes], rate: float, seconds: float) -> tuple[np.ndarray, int]:
    """Send `rate` req/s for `seconds`; return latencies (s, from the scheduled time) and errors."""
    client = UpstreamClient(f"http://127.0.0.1:{port}", max_connections=512, timeout_s=10)
    loop = asyncio.get_running_loop()
    n = int(rate * seconds)
    lat = np.full(n, np.nan)
    errors = 0

    async def one(i: int, due: float) -> None:
        nonlocal errors
        try:
            status, _ = await client.request("POST", PATH, bodies[i % len(bodies)], HEADERS)
            if status != 200:
                errors += 1
        except Exception:
            errors += 1
        lat[i] = time.perf_counter() - due

    tasks = []
    t0 = time.perf_counter() + 0.01
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    await client.close()
    return lat[~np.isnan(lat)], errors


def cpu_seconds(pid: int) -> float:
    """user+sys CPU of a process and its descendants (nginx's worker, uvicorn's), from /proc."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


async def sequential(targets: dict[str, tuple[int, int | None]], n: int, rounds: int) -> None:
    """One request at a time, `n` per target per round, interleaved: the pure added latency."""
    body = encode_oip_request({"features": synth_applicants(1, np.random.default_rng(2))})
    clients = {k: UpstreamClient(f"http://127.0.0.1:{p}", max_connections=1) for k, (p, _) in targets.items()}
    lat: dict[str, list[float]] = {k: [] for k in targets}
    for rnd in range(rounds + 1):
        for k, c in clients.items():
            for _ in range(n):
                t = time.perf_counter()
                status, _ = await c.request("POST", PATH, body, HEADERS)
                if rnd:  # round 0 warms up
                    lat[k].append(time.perf_counter() - t)
                if status != 200:
                    raise RuntimeError(f"{k} answered {status}")
    d50 = np.percentile(lat["direct"], 50) * 1e3
    print(f"\nsequential (1 in flight), {n} x {rounds} requests per target, interleaved (ms):")
    print(f"{'target':18s} {'p50':>7s} {'p90':>7s} {'p99':>7s} {'+p50':>7s}")
    for k, v in lat.items():
        p50, p90, p99 = np.percentile(v, [50, 90, 99]) * 1e3
        print(f"{k:18s} {p50:7.3f} {p90:7.3f} {p99:7.3f} {p50 - d50:+7.3f}")
    for c in clients.values():
        await c.close()


Cell = tuple[float, float, int, float]  # p50 ms, p99 ms, errors, CPU µs/req of the middle box


async def measure(targets: dict[str, tuple[int, int | None]], rates: list[float], seconds: float,
                  rounds: int) -> dict[tuple[str, float], list[Cell]]:
    rng = np.random.default_rng(1)
    bodies = [encode_oip_request({"features": synth_applicants(1, rng)}) for _ in range(512)]
    out: dict[tuple[str, float], list[Cell]] = {}
    for name, (port, _) in targets.items():  # warm every pool and cache
        await open_loop(port, bodies, 200, 1.0)
    for rnd in range(rounds):
        for rate in rates:
            for name, (port, pid) in targets.items():
                c0 = cpu_seconds(pid) if pid else 0.0
                lat, errors = await open_loop(port, bodies, rate, seconds)
                cpu_us = (cpu_seconds(pid) - c0) / max(len(lat), 1) * 1e6 if pid else 0.0
                p50, p99 = np.percentile(lat, [50, 99]) * 1e3
                out.setdefault((name, rate), []).append((p50, p99, errors, cpu_us))
                print(f"round {rnd + 1} {rate:6.0f} req/s  {name:18s} p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  "
                      f"errors {errors}  middle-box CPU {cpu_us:5.0f} µs/req", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="added latency of shadowlane vs nginx in front of a model server")
    ap.add_argument("--rates", type=float, nargs="+", default=[200, 500, 1000])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; medians are reported")
    ap.add_argument("--lean", action="store_true",
                    help="add bench/lean_forwarder.py, the floor for a Python proxy, as a target")
    ap.add_argument("--sequential", type=int, metavar="N", default=0,
                    help="instead: closed loop, one request in flight, N requests per target per round")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally: stop the servers
    work = Path(tempfile.mkdtemp(prefix="upstream-overhead-"))
    procs: list[subprocess.Popen] = []
    try:
        up, up2 = free_port(), free_port()
        # Each into `procs` as soon as it runs: a later one failing to start must not leak it.
        procs.append(start_upstream(up, cpu=0))
        procs.append(start_upstream(up2, cpu=0))
        sl, sl_port = start_shadowlane(work, up, up2, shadow=False)
        procs.append(sl)
        sls, sls_port = start_shadowlane(work, up, up2, shadow=True)
        procs.append(sls)
        targets: dict[str, tuple[int, int | None]] = {
            "direct": (up, None), "shadowlane": (sl_port, sl.pid), "shadowlane+shadow": (sls_port, sls.pid)}
        if args.lean:
            lean_port = free_port()
            lean = subprocess.Popen(pinned([sys.executable, str(ROOT / "bench" / "lean_forwarder.py"),
                                            str(lean_port), f"http://127.0.0.1:{up}"], 1))
            procs.append(lean)
            wait_port(lean_port, lean)
            targets["python-lean-fwd"] = (lean_port, lean.pid)
        ng, ng_plain, ng_mirror = start_nginx(work, up, up2)
        if ng is not None:
            procs.append(ng)
            targets |= {"nginx": (ng_plain, ng.pid), "nginx+mirror": (ng_mirror, ng.pid)}
        import uvloop

        if args.sequential:
            uvloop.run(sequential(targets, args.sequential, args.rounds))
            return
        cells = uvloop.run(measure(targets, args.rates, args.seconds, args.rounds))
        res = {k: tuple(float(np.median(col)) for col in zip(*v)) for k, v in cells.items()}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    print(f"\nmedians of {args.rounds} interleaved rounds; added latency over direct (ms), open loop, "
          f"{args.seconds:g} s per cell; CPU = the middle box's own CPU per request:")
    print(f"{'rate':>6s} {'target':18s} {'p50':>7s} {'p99':>7s} {'+p50':>7s} {'+p99':>7s} {'CPU µs':>7s}")
    for rate in args.rates:
        d50, d99, _, _ = res[("direct", rate)]
        for name in targets:
            p50, p99, _, cpu = res[(name, rate)]
            print(f"{rate:6.0f} {name:18s} {p50:7.3f} {p99:7.3f} {p50 - d50:+7.3f} {p99 - d99:+7.3f} {cpu:7.0f}")
        if "nginx" in targets:
            s_add = res[("shadowlane", rate)][0] - d50
            n_add = res[("nginx", rate)][0] - d50
            ratio = s_add / n_add if n_add > 0 else float("inf")
            verdict = "meets" if s_add <= 2 * n_add else "misses"
            print(f"{'':6s} shadowlane added p50 = {ratio:.2f}× nginx's ({verdict} the ≤ 2× target)")


if __name__ == "__main__":
    main()
