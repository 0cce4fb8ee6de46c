"""Open-loop, constant-rate HTTP/1.1 load generator with coordinated-omission correction.

wrk2 (Gil Tene's constant-throughput wrk) is not in Debian's packages and nothing but the package
registries is reachable here, so this is a small generator in its spirit:

- request i is *due* at t0 + i/rate, whatever happened to earlier requests (open loop);
- its latency is measured from that due time, not from when a connection became free, so a
  stalled server is charged for every request that queued behind the stall (the correction wrk2
  makes; plain wrk and Locust measure from the actual send and hide such stalls);
- a fixed pool of keep-alive connections, one request in flight on each; responses parsed by
  httptools (the parser uvicorn uses);
- it *sleeps* between sends in `select()` with a microsecond timeout (timer slack set to 1 µs)
  rather than spinning or using an event loop's millisecond timers: on a shared core the
  scheduler favours a sleeper that wakes, where a spinner is preempted for whole time slices.
  Its own lateness (send time − due time) is reported as `gen_lag_*` to show whether the
  generator kept the schedule.

Usage: python bench/openloop.py --port P --rate R --duration S [--warmup S] [--connections C]
prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import select
import socket
import sys
import time
from array import array
from collections import deque
from pathlib import Path

import httptools
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.payloads import make_requests  # noqa: E402

perf = time.perf_counter
_PR_SET_TIMERSLACK = 29


class _Conn:
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = httptools.HttpResponseParser(self)
        self.due = self.sent = 0.0
        self.complete = False

    def send(self, due: float, raw: bytes) -> None:
        self.due, self.sent, self.complete = due, perf(), False
        self.sock.sendall(raw)

    def on_message_complete(self) -> None:
        self.complete = True


def _pct(values: array, qs: tuple[float, ...]) -> list[float | None]:
    if not values:
        return [None] * len(qs)
    return [float(x) for x in np.percentile(np.frombuffer(values, dtype=np.float64), qs) * 1e6]


def run(host: str, port: int, raws: list[bytes], rate: float, warmup: float, duration: float,
        connections: int) -> dict[str, object]:
    try:  # wake within ~1 µs of the select() timeout instead of the default 50 µs slack
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    conns = [_Conn(host, port) for _ in range(connections)]
    by_fd = {c.sock.fileno(): c for c in conns}
    idle: deque[_Conn] = deque(conns)
    busy: set[int] = set()
    pending: deque[tuple[float, bytes]] = deque()
    lat, svc, lag = array("d"), array("d"), array("d")
    status: dict[str, int] = {}
    errors = {"parse": 0, "closed": 0}
    interval, n = 1.0 / rate, len(raws)
    t0 = perf() + 0.01
    m_start = t0 + warmup
    end = m_start + duration
    i = 0
    next_due = t0

    def finish(conn: _Conn, now: float) -> None:
        if conn.due >= m_start:
            lat.append(now - conn.due)
            svc.append(now - conn.sent)
            code = str(conn.parser.get_status_code())
            status[code] = status.get(code, 0) + 1
        if pending:
            due, raw = pending.popleft()
            conn.send(due, raw)
        else:
            busy.discard(conn.sock.fileno())
            idle.append(conn)

    drain_until = end + 5.0
    while True:
        now = perf()
        if now >= end and not busy and not pending:
            break
        if now >= drain_until:
            break
        # Send everything that is due.
        while now < end and next_due <= now:
            raw = raws[i % n]
            if idle:
                conn = idle.popleft()
                busy.add(conn.sock.fileno())
                conn.send(next_due, raw)
                if next_due >= m_start:
                    lag.append(conn.sent - next_due)
            else:
                pending.append((next_due, raw))
            i += 1
            next_due = t0 + i * interval
        timeout = max(0.0, next_due - perf()) if now < end else 0.01
        if busy:
            readable = select.select(list(busy), [], [], timeout)[0]
        else:
            time.sleep(timeout)  # nothing in flight: only the schedule to keep
            readable = []
        now = perf()
        for fd in readable:
            conn = by_fd[fd]
            data = conn.sock.recv(65536)
            if not data:
                errors["closed"] += 1
                busy.discard(fd)
                continue
            try:
                conn.parser.feed_data(data)
            except httptools.HttpParserError:
                errors["parse"] += 1
                busy.discard(fd)
                continue
            if conn.complete:
                finish(conn, now)
    for c in conns:
        c.sock.close()
    done = len(lat)
    p50, p90, p99, p999, pmax = _pct(lat, (50, 90, 99, 99.9, 100))
    s50, s99 = _pct(svc, (50, 99))
    g50, g99 = _pct(lag, (50, 99))
    ok = sum(c for s, c in status.items() if s.startswith("2"))
    return {
        "generator": "bench/openloop.py (open loop, corrected)", "offered_rps": rate,
        "achieved_rps": done / duration, "requests": done, "unfinished": math.floor(rate * duration) - done,
        "non_2xx": done - ok, "status": status, "errors": errors,
        "p50_us": p50, "p90_us": p90, "p99_us": p99, "p999_us": p999, "max_us": pmax,
        "uncorrected_p50_us": s50, "uncorrected_p99_us": s99,
        "gen_lag_p50_us": g50, "gen_lag_p99_us": g99, "connections": connections,
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
    reqs = make_requests(args.requests, model=args.model, mix_invocations=args.mix_invocations)
    host = f"{args.host}:{args.port}"
    result = run(args.host, args.port, [r.raw(host) for r in reqs], args.rate, args.warmup, args.duration,
                 args.connections)
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
