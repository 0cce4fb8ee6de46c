"""Which pooled keep-alive async HTTP client should the proxy use to call upstreams?

Runs a real local OIP upstream (bench/oip_upstream.py: uvicorn + onnxruntime) in a subprocess
on CPU 0, and drives it from this process (uvloop, CPU 1) with each client in turn: httpx,
aiohttp, and a lean hand-written asyncio HTTP/1.1 keep-alive client (httptools parser). Each
client posts the same 1-row OIP infer body with `--concurrency` requests in flight for
`--seconds`; rounds are interleaved so machine noise hits every client alike.
Prints req/s, p50/p99 latency (ms) and the client's CPU µs per request.

    .venv/bin/python bench/http_clients.py [--seconds 4] [--rounds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from proxy.codecs_upstream import encode_oip_request  # noqa: E402
from shadowlane.demo_models import synth_applicants  # noqa: E402

Post = Callable[[bytes], Awaitable[tuple[int, bytes]]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cmd: list[str], cpu: int) -> list[str]:
    return (["taskset", "-c", str(cpu)] + cmd) if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1 else cmd


def start_upstream(port: int, cpu: int = 0) -> subprocess.Popen:
    here = Path(__file__).resolve().parent
    proc = subprocess.Popen(pinned([sys.executable, str(here / "oip_upstream.py"), "--port", str(port)], cpu),
                            cwd=here.parent)
    wait_port(port, proc)
    return proc


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    if proc is not None:  # not yet in any caller's cleanup list: stop it here, or it outlives us
        proc.kill()
        proc.wait()
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


# ── the hand-written candidate ───────────────────────────────────────────────────────────────

class _RawConn(asyncio.Protocol):
    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.body: list[bytes] = []
        self.closed = False

    def connection_made(self, transport):  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        w, self.waiter = self.waiter, None
        body, self.body = b"".join(self.body), []
        if w is not None and not w.done():
            w.set_result((self.parser.get_status_code(), body))

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))


class RawClient:
    """HTTP/1.1 keep-alive pool: one request in flight per connection, no pipelining."""

    def __init__(self, host: str, port: int, size: int):
        self.host, self.port = host, port
        self.idle: list[_RawConn] = []
        self.sem = asyncio.Semaphore(size)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        async with self.sem:
            conn = None
            while self.idle:
                conn = self.idle.pop()
                if not conn.closed:
                    break
                conn = None
            if conn is None:
                loop = asyncio.get_running_loop()
                _, conn = await loop.create_connection(_RawConn, self.host, self.port)
            conn.waiter = asyncio.get_running_loop().create_future()
            conn.transport.write(b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\n\r\n%s" % (path.encode(), self.host.encode(), len(body), body))
            result = await conn.waiter
            if not conn.closed:
                self.idle.append(conn)
            return result

    async def close(self) -> None:
        for c in self.idle:
            c.transport.close()


# ── the clients under test ───────────────────────────────────────────────────────────────────

async def make_client(kind: str, base: str, path: str, conc: int) -> tuple[Post, Callable[[], Awaitable[None]]]:
    url = base + path
    headers = {"content-type": "application/json"}
    if kind == "httpx":
        import httpx

        c = httpx.AsyncClient(limits=httpx.Limits(max_connections=conc, max_keepalive_connections=conc),
                              timeout=httpx.Timeout(5.0, connect=1.0))

        async def post(body: bytes) -> tuple[int, bytes]:
            r = await c.post(url, content=body, headers=headers)
            return r.status_code, r.content

        return post, c.aclose
    if kind == "aiohttp":
        import aiohttp

        c = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc, ttl_dns_cache=None),
                                  timeout=aiohttp.ClientTimeout(total=5.0, sock_connect=1.0),
                                  skip_auto_headers=("user-agent",))

        async def post(body: bytes) -> tuple[int, bytes]:
            async with c.post(url, data=body, headers=headers) as r:
                return r.status, await r.read()

        return post, c.close
    if kind == "raw":
        host, port = base.removeprefix("http://").split(":")
        c = RawClient(host, int(port), conc)
        return (lambda body: c.post(path, body)), c.close
    raise ValueError(kind)


async def drive(post: Post, bodies: list[bytes], conc: int, seconds: float) -> tuple[list[float], float]:
    lat: list[float] = []
    stop = time.perf_counter() + seconds
    i = 0

    async def worker() -> None:
        nonlocal i
        while time.perf_counter() < stop:
            body = bodies[i % len(bodies)]
            i += 1
            t0 = time.perf_counter()
            status, _ = await post(body)
            lat.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"upstream answered {status}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    return lat, time.perf_counter() - t0


async def run(args: argparse.Namespace, base: str) -> dict[str, list[tuple[float, float, float, float]]]:
    rng = np.random.default_rng(0)
    bodies = [encode_oip_request({"features": synth_applicants(1, rng)}) for _ in range(256)]
    path = "/v2/models/credit/infer"
    results: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in args.clients}
    for rnd in range(args.rounds):
        for kind in args.clients:
            post, close = await make_client(kind, base, path, args.concurrency)
            await drive(post, bodies, args.concurrency, 0.5)  # warm the pool
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            lat, wall = await drive(post, bodies, args.concurrency, args.seconds)
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            await close()
            cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
            q = np.percentile(lat, [50, 99]) * 1e3
            results[kind].append((len(lat) / wall, q[0], q[1], cpu / len(lat) * 1e6))
            print(f"round {rnd + 1} {kind:8s} {len(lat) / wall:8.0f} req/s  p50 {q[0]:.3f} ms  "
                  f"p99 {q[1]:.3f} ms  client CPU {cpu / len(lat) * 1e6:.0f} µs/req", flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description="compare pooled async HTTP clients against a real local upstream")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--clients", nargs="+", default=["httpx", "aiohttp", "raw"])
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally: stop the servers
    port = free_port()
    upstream = start_upstream(port, cpu=0)
    try:
        if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {1})
        import uvloop

        results = uvloop.run(run(args, f"http://127.0.0.1:{port}"))
    finally:
        upstream.terminate()
        upstream.wait(10)
    print(f"\nmedian of {args.rounds} interleaved rounds, c={args.concurrency}, {args.seconds:g} s each:")
    print(f"{'client':8s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'CPU µs/req':>11s}")
    for kind, rows in results.items():
        med = [statistics.median(col) for col in zip(*rows)]
        print(f"{kind:8s} {med[0]:8.0f} {med[1]:8.3f} {med[2]:8.3f} {med[3]:11.0f}")


if __name__ == "__main__":
    main()
