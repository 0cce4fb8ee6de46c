"""Run the proxy under uvicorn (uvloop + httptools), one or more worker processes."""

from __future__ import annotations

import os
import tempfile

import uvicorn

from proxy.app import ProxyApp, build_app
from proxy.config import load_config

CONFIG_ENV = "SHADOWLANE_CONFIG"


def app_factory() -> ProxyApp:
    """uvicorn factory: each worker process loads the config named in $SHADOWLANE_CONFIG."""
    return build_app(load_config(os.environ[CONFIG_ENV]))


def serve(config_path: str, *, host: str, port: int, workers: int = 1, log_level: str = "warning") -> None:
    os.environ[CONFIG_ENV] = os.path.abspath(config_path)
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Workers are fresh processes that import prometheus_client after this is set, so their
        # counters live in shared mmap files and /metrics on any worker sums all of them.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="shadowlane-metrics-")
    uvicorn.run("proxy.server:app_factory", factory=True, host=host, port=port, workers=workers,
                loop="uvloop", http="httptools", lifespan="on", log_level=log_level,
                # No access log, server/date headers or X-Forwarded-* rewriting: the hot path never
                # reads the client address, and each costs every request a few µs (docs/performance.md).
                access_log=False, server_header=False, date_header=False, proxy_headers=False)
