"""Servers under test: start pinned to a CPU, wait until they answer, account CPU and memory, stop.

Each server runs in its own session (process group) so stopping it ends its workers too, and
only what this module started is ever signalled.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import psutil

SERVER_CPU = "0"


def free_port() -> int:
    """An ephemeral TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One server process (and its children), pinned to `cpu`."""

    name: str
    argv: Sequence[str]
    port: int
    log: Path
    env: dict[str, str] | None = None
    cpu: str = SERVER_CPU
    cwd: str | None = None
    ready_path: str | None = None  # GET until 200 (a multi-worker server listens before workers are up)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    rss_samples: list[tuple[float, int, int]] = field(default_factory=list, init=False)  # (t, pid, rss)

    def start(self, timeout_s: float = 60.0) -> None:
        env = {**os.environ, **(self.env or {})}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["taskset", "-c", self.cpu, *self.argv], stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.cwd,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout_s
        settle_until = time.monotonic() + 2.0  # a server without a port: alive for 2 s is up
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} during start; "
                                   f"log {self.log}:\n{self.log.read_text()[-2000:]}")
            if not self.port:
                if time.monotonic() >= settle_until:
                    return
            elif self._answers():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on {self.port} within {timeout_s:.0f}s; log {self.log}")

    def _answers(self) -> bool:
        try:
            if self.ready_path is None:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            try:
                conn.request("GET", self.ready_path)
                return conn.getresponse().status == 200
            finally:
                conn.close()
        except OSError:
            return False

    def processes(self) -> list[psutil.Process]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU of the process tree (live processes)."""
        total = 0.0
        for p in self.processes():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def sample_rss(self) -> None:
        now = time.monotonic()
        for p in self.processes():
            try:
                self.rss_samples.append((now, p.pid, p.memory_info().rss))
            except psutil.NoSuchProcess:
                pass

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is our child's pid
        try:
            os.killpg(pgid, signal.SIGTERM)
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(5)
        except ProcessLookupError:
            pass


class RssSampler:
    """Samples the RSS of every process of the given servers once per `interval_s`."""

    def __init__(self, servers: Sequence[Server], interval_s: float = 1.0) -> None:
        self.servers, self.interval_s = list(servers), interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            for s in self.servers:
                s.sample_rss()

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def rss_summary(server: Server) -> list[dict[str, float]]:
    """Per process: RSS in MiB at the first and last sample, the max, and the growth from the
    middle third to the last third of the run (the first third is warm-up: buffers, allocator
    pools and caches fill; memory that is flat after that shows ~0)."""
    by_pid: dict[int, list[tuple[float, int]]] = {}
    for t, pid, rss in server.rss_samples:
        by_pid.setdefault(pid, []).append((t, rss))
    out = []
    for pid, samples in by_pid.items():
        if len(samples) < 3:
            continue
        mib = [r / 2**20 for _, r in samples]
        third = max(1, len(mib) // 3)
        middle = mib[third:2 * third] or mib[:third]
        first, last = sum(middle) / len(middle), sum(mib[-third:]) / third
        out.append({"pid": pid, "samples": len(mib), "first_mib": round(mib[0], 1), "last_mib": round(mib[-1], 1),
                    "max_mib": round(max(mib), 1), "growth_mib": round(last - first, 1)})
    return out
