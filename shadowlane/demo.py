"""`shadowlane demo`: the main job on the embedded default, no external service.

Builds a credit-risk champion and a slightly different shadow as real ONNX files, writes a
deployment config, starts `shadowlane serve` (uvicorn on loopback), sends a few thousand requests
from many users, then reads the shadow log it left on disk and prints what a platform engineer
looks at before promoting: throughput, champion latency, records, agreement and divergence.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml

from shadowlane.demo_models import CREDIT_FEATURES, credit_model, save, synth_applicants
from shadowlane.record import decode
from shadowlane.segments import read_lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_demo_deployment(workdir: Path, port: int) -> Path:
    """Two ONNX models and a deployment config mirroring 100% of traffic to the shadow."""
    models = workdir / "models"
    save(credit_model(), models / "credit-risk-v1.onnx")
    # The candidate re-weights debt-to-income and utilisation a little: close, not identical.
    shift = np.array([0, -0.05, 0.15, 0, 0, 0.05, 0, 0, -0.1, 0], np.float32)
    save(credit_model(weight_shift=shift, bias_shift=0.05), models / "credit-risk-v2.onnx")
    cfg: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port, "attribute_headers": {"segment": "x-segment"}},
        "shadow": {"queue_size": 10000, "record_features": True},
        "sink": {"type": "file", "directory": "shadowlog"},
        "models": {
            "credit-v1": {"name": "credit-risk", "version": 1, "feature_names": list(CREDIT_FEATURES),
                          "backend": {"type": "onnx", "path": "models/credit-risk-v1.onnx"}},
            "credit-v2": {"name": "credit-risk", "version": 2, "feature_names": list(CREDIT_FEATURES),
                          "backend": {"type": "onnx", "path": "models/credit-risk-v2.onnx"}},
        },
        "endpoints": {"credit": {"champion": "credit-v1",
                                 "shadows": [{"model": "credit-v2", "fraction": 1.0, "timeout_ms": 500}]}},
    }
    path = workdir / "deploy.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


async def _drive(url: str, n: int, users: int, concurrency: int, seed: int) -> tuple[list[float], int, float]:
    import httpx

    rng = np.random.default_rng(seed)
    rows = synth_applicants(n, rng)
    user_ids = [f"user-{i:05d}" for i in rng.integers(0, users, n)]
    latencies: list[float] = []
    failures = 0
    it = iter(range(n))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        for i in it:
            row = rows[i]
            segment = "small_business" if row[9] > 0.5 else "consumer"
            headers = {"x-user-id": user_ids[i], "x-segment": segment}
            if i % 4 == 0:  # a quarter speak MLflow's scoring protocol
                req = client.post("/invocations", json={"dataframe_records": [dict(zip(CREDIT_FEATURES, row.tolist()))]},
                                  headers=headers)
            else:
                req = client.post("/v2/models/credit/infer", headers=headers, json={
                    "inputs": [{"name": "features", "shape": [1, 10], "datatype": "FP32", "data": row.tolist()}]})
            t0 = time.perf_counter()
            r = await req
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                failures += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return latencies, failures, elapsed


def summarize(log_dir: Path) -> dict[str, float]:
    """Agreement and divergence between champion and shadow, read back from the shadow log."""
    n = agree = ok = 0
    diffs: list[np.ndarray] = []
    for line in read_lines(log_dir):
        rec = decode(line)
        n += 1
        if rec["shadow"]["status"] != "ok":
            continue
        ok += 1
        c, s = rec["champion"]["outputs"], rec["shadow"]["outputs"]
        agree += int(np.sum(np.asarray(c["label"]) == np.asarray(s["label"])))
        diffs.append(np.abs(np.asarray(c["probabilities"])[:, 1] - np.asarray(s["probabilities"])[:, 1]))
    d = np.concatenate(diffs) if diffs else np.zeros(0)
    return {"records": n, "ok": ok, "agreement": agree / d.size if d.size else float("nan"),
            "mean_abs_diff": float(d.mean()) if d.size else float("nan"),
            "p99_abs_diff": float(np.quantile(d, 0.99)) if d.size else float("nan")}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="shadowlane demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=["basic", "incident"], default="basic",
                   help="basic: serve + shadow + summary; incident: the fairness-gate story (gates/)")
    p.add_argument("--dir", default="shadowlane-demo", help="working directory (models, config, shadow log)")
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--users", type=int, default=800)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seed", type=int, default=2026)
    args, rest = p.parse_known_args(argv)
    if args.scenario == "incident":
        from shadowlane.incident_demo import main as incident_main  # imports gates/ (offline tools)

        return int(incident_main([*rest, "--dir", args.dir, "--requests", str(args.requests),
                                  "--concurrency", str(args.concurrency), "--seed", str(args.seed)]) or 0)
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")

    workdir = Path(args.dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log_dir = workdir / "shadowlog"
    for old in log_dir.glob("shadow-*.jsonl*"):  # a fresh log per run keeps the summary honest
        old.unlink()
    port = _free_port()
    config = write_demo_deployment(workdir, port)
    print(f"shadowlane demo: models and config in {workdir}")
    with running_proxy(config, port, workdir / "server.log") as url:
        print(f"proxy ready at {url}; sending {args.requests} requests from {args.users} users "
              f"({args.concurrency} concurrent)...")
        lat, failures, elapsed = asyncio.run(_drive(url, args.requests, args.users, args.concurrency, args.seed))
    stats = summarize(log_dir)
    ms = np.asarray(lat) * 1000
    print()
    print(f"  requests served       {len(lat) - failures:>10,d}   ({failures} failed)")
    print(f"  throughput            {len(lat) / elapsed:>10,.0f} req/s   (client and server share this machine)")
    print(f"  champion latency p50  {np.percentile(ms, 50):>10.2f} ms   (client-observed, incl. HTTP)")
    print(f"  champion latency p99  {np.percentile(ms, 99):>10.2f} ms")
    print(f"  shadow records        {stats['records']:>10,d}   ({stats['ok']:,d} with a shadow answer)")
    print(f"  label agreement       {stats['agreement']:>10.2%}")
    print(f"  |p1 champion - p1 shadow|  mean {stats['mean_abs_diff']:.4f}, p99 {stats['p99_abs_diff']:.4f}")
    print()
    print(f"shadow log: {log_dir}  (JSON lines; format in docs/shadow-log.md)")
    return 0 if failures == 0 and stats["records"] == len(lat) else 1


@contextlib.contextmanager
def running_proxy(config: Path, port: int, log_path: Path, *, cwd: Path | None = None) -> Iterator[str]:
    """`shadowlane serve` in a subprocess, ready when this yields its URL; stopped gracefully
    (SIGINT: drain shadows, seal the open segment) when the block ends."""
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "shadowlane", "serve", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log_path)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"proxy exited ({proc.returncode}):\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"proxy not ready after {timeout_s}s; see {log_path}")
