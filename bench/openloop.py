"""Open-loop, constant-rate HTTP/1.1 load generator with coordinated-omission correction.

wrk2 (Gil Tene's constant-throughput wrk) is not in Debian's packages and nothing but the package
registries is reachable here, so this is a small generator in its spirit:

- request i is *due* at t0 + i/rate, whatever happened to earlier requests (open loop);
- its latency is measured from that due time, not from when a connection became free, so a
  stalled server is charged for every request that queued behind the stall (the correction wrk2
  makes; plain wrk and Locust measure from the actual send and hide such stalls);
- responses are parsed by httptools (the parser uvicorn uses), on uvloop, over a fixed pool of
  keep-alive connections; the schedule is kept by spinning on the loop (it owns its CPU, which
  run.py pins away from the server), so the generator's own lateness stays in the microseconds
  and is reported (`gen_lag_p99_us`) to show it is not the bottleneck.

Usage: python bench/openloop.py --port P --rate R --duration S [--warmup S] [--connections C]
prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from array import array
from collections import deque
from pathlib import Path

import httptools
import numpy as np
import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.payloads import make_requests  # noqa: E402

perf = time.perf_counter


class _Conn(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self, gen: "_Generator") -> None:
        self.gen = gen
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.due = 0.0
        self.sent = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.gen.idle.append(self)

    def send(self, due: float, raw: bytes) -> None:
        self.due, self.sent = due, perf()
        self.transport.write(raw)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.gen.errors["parse"] += 1
            self.transport.close()  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        self.gen.completed(self, self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.lost(self)


class _Generator:
    def __init__(self, raws: list[bytes], rate: float, warmup: float, duration: float) -> None:
        self.raws, self.rate = raws, rate
        self.idle: deque[_Conn] = deque()
        self.pending: deque[tuple[float, bytes]] = deque()
        self.lat = array("d")  # from due time (corrected), measured window only
        self.svc = array("d")  # from actual send
        self.lag = array("d")  # send - due for requests that found an idle connection
        self.status: dict[int, int] = {}
        self.errors = {"parse": 0, "closed": 0}
        self.in_flight = 0
        self.running = True
        self.t0 = perf() + 0.1
        self.m_start = self.t0 + warmup
        self.end = self.m_start + duration

    def completed(self, conn: _Conn, status: int) -> None:
        now = perf()
        self.in_flight -= 1
        if conn.due >= self.m_start:
            self.lat.append(now - conn.due)
            self.svc.append(now - conn.sent)
            self.status[status] = self.status.get(status, 0) + 1
        if self.pending:
            due, raw = self.pending.popleft()
            self.in_flight += 1
            conn.send(due, raw)
        else:
            self.idle.append(conn)

    def lost(self, conn: _Conn) -> None:
        if self.running:  # connections closing at exit are not errors
            self.errors["closed"] += 1
        if conn in self.idle:
            self.idle.remove(conn)

    async def run(self) -> None:
        interval, raws, n = 1.0 / self.rate, self.raws, len(self.raws)
        i = 0
        while True:
            now = perf()
            if now >= self.end:
                break
            due_n = int((now - self.t0) / interval) + 1 if now >= self.t0 else 0
            while i < due_n:
                due = self.t0 + i * interval
                raw = raws[i % n]
                self.in_flight += 1
                if self.idle:
                    conn = self.idle.popleft()
                    conn.send(due, raw)
                    if due >= self.m_start:
                        self.lag.append(conn.sent - due)
                else:
                    self.pending.append((due, raw))
                i += 1
            await asyncio.sleep(0)  # spin: timers have millisecond resolution, the schedule needs µs
        deadline = perf() + 5.0  # let the tail of the window finish
        while (self.in_flight > 0) and perf() < deadline:
            await asyncio.sleep(0.001)


def _pct(values: array, qs: tuple[float, ...]) -> list[float]:
    if not values:
        return [float("nan")] * len(qs)
    return [float(x) for x in np.percentile(np.frombuffer(values, dtype=np.float64), qs) * 1e6]


async def _main(args: argparse.Namespace) -> dict[str, object]:
    reqs = make_requests(args.requests, model=args.model, mix_invocations=args.mix_invocations)
    host = f"{args.host}:{args.port}"
    gen = _Generator([r.raw(host) for r in reqs], args.rate, args.warmup, args.duration)
    loop = asyncio.get_running_loop()
    for _ in range(args.connections):
        await loop.create_connection(lambda: _Conn(gen), args.host, args.port)
    gen.t0 = perf() + 0.05
    gen.m_start = gen.t0 + args.warmup
    gen.end = gen.m_start + args.duration
    await gen.run()
    gen.running = False
    done = len(gen.lat)
    offered = int(args.rate * args.duration)
    p50, p90, p99, p999, pmax = _pct(gen.lat, (50, 90, 99, 99.9, 100))
    s50, s99 = _pct(gen.svc, (50, 99))
    g50, g99 = _pct(gen.lag, (50, 99))
    ok = sum(c for s, c in gen.status.items() if 200 <= s < 300)
    return {
        "generator": "bench/openloop.py (open loop, corrected)", "offered_rps": args.rate,
        "achieved_rps": done / args.duration, "requests": done, "unfinished": offered - done,
        "non_2xx": done - ok, "status": {str(k): v for k, v in gen.status.items()}, "errors": gen.errors,
        "p50_us": p50, "p90_us": p90, "p99_us": p99, "p999_us": p999, "max_us": pmax,
        "uncorrected_p50_us": s50, "uncorrected_p99_us": s99,
        "gen_lag_p50_us": g50, "gen_lag_p99_us": g99, "connections": args.connections,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True, help="offered requests per second")
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds at the same rate, not measured")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--requests", type=int, default=512, help="distinct request bodies to cycle")
    ap.add_argument("--model", default="credit")
    ap.add_argument("--mix-invocations", type=float, default=0.0)
    args = ap.parse_args(argv)
    result = uvloop.run(_main(args))
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
