"""A shadow that raises, hangs, is missing, or cannot keep up never changes a champion response.

Each faulty deployment answers the same requests as a champion-only run; status, body and the
x-shadowlane-* headers must be byte-identical, and the fault must show in /metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from shadowlane.demo_models import synth_applicants
from tests.fixtures.proxy import ProxyHandle, base_config, oip_body

N = 40
BATCHES = [synth_applicants(1 + i % 3, np.random.default_rng(i)) for i in range(N)]
SERVED_HEADERS = ("x-shadowlane-model", "x-shadowlane-version", "x-shadowlane-variant", "x-request-id", "content-type")


def _run(h: ProxyHandle) -> list[tuple[int, bytes, tuple[str, ...]]]:
    out = []
    with h.client() as c:
        for i, rows in enumerate(BATCHES):
            body = oip_body(rows, req_id=f"q{i}")
            if i % 2:
                r = c.post("/v2/models/credit/infer", json=body, headers={"x-user-id": f"u{i}", "x-request-id": f"r{i}"})
            else:
                r = c.post("/invocations", json={"inputs": rows.tolist()}, headers={"x-user-id": f"u{i}", "x-request-id": f"r{i}"})
            out.append((r.status_code, r.content, tuple(r.headers[k] for k in SERVED_HEADERS)))
    return out


def _metric(h: ProxyHandle, prefix: str) -> float:
    with h.client() as c:
        text = c.get("/metrics").text
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(prefix))


def _wait_metric(h: ProxyHandle, prefix: str, want: float, timeout_s: float = 10) -> float:
    """Shadow work finishes after the responses: poll /metrics until it shows `want` (or give up)."""
    import time

    deadline = time.monotonic() + timeout_s
    value = _metric(h, prefix)
    while value < want and time.monotonic() < deadline:
        time.sleep(0.05)
        value = _metric(h, prefix)
    return value


def _python_model(target: str, **kwargs: Any) -> dict[str, Any]:
    return {"name": "faulty", "version": 9, "backend": {"type": "python", "target": target, "kwargs": kwargs}}


@pytest.fixture(scope="module")
def baseline(onnx_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> list:
    from tests.fixtures.proxy import start_proxy

    work = tmp_path_factory.mktemp("baseline")
    h = start_proxy(base_config(onnx_models, work / "log"), work)
    try:
        return _run(h)
    finally:
        h.stop()


def _faulty_config(onnx_models: dict[str, Path], log: Path, model: dict[str, Any], *, timeout_ms: float = 50,
                   **shadow: Any) -> dict[str, Any]:
    cfg = base_config(onnx_models, log, shadows=[{"model": "faulty", "timeout_ms": timeout_ms}])
    cfg["models"]["faulty"] = model
    cfg["shadow"] = shadow or {}
    return cfg


def test_raising_shadow(baseline: list, onnx_models: dict[str, Path], tmp_path: Path,
                        proxy_server: Callable[..., ProxyHandle]) -> None:
    h = proxy_server(_faulty_config(onnx_models, tmp_path / "log", _python_model("tests.faults:RaisingModel")))
    assert _run(h) == baseline
    assert _wait_metric(h, 'shadowlane_shadow_failed_total{endpoint="credit",reason="error",shadow="faulty"}', N) == N
    assert _metric(h, "shadowlane_shadow_completed_total") == 0


def test_shadow_past_its_timeout(baseline: list, onnx_models: dict[str, Path], tmp_path: Path,
                                 proxy_server: Callable[..., ProxyHandle]) -> None:
    model = _python_model("tests.faults:SleepyModel", seconds=30)
    h = proxy_server(_faulty_config(onnx_models, tmp_path / "log", model, timeout_ms=20, max_batch=64))
    assert _run(h) == baseline
    assert _wait_metric(h, 'shadowlane_shadow_failed_total{endpoint="credit",reason="timeout"', 1) >= 1
    assert _metric(h, "shadowlane_shadow_completed_total") == 0


def test_full_queue_drops_and_counts(baseline: list, onnx_models: dict[str, Path], tmp_path: Path,
                                     proxy_server: Callable[..., ProxyHandle]) -> None:
    model = _python_model("tests.faults:SleepyModel", seconds=30)
    # One slot, one job per batch, a 10 s timeout: the worker is stuck, the queue stays full.
    h = proxy_server(_faulty_config(onnx_models, tmp_path / "log", model, timeout_ms=10_000,
                                    queue_size=1, max_batch=1))
    assert _run(h) == baseline
    dropped = _metric(h, 'shadowlane_shadow_dropped_total{endpoint="credit",reason="queue_full",shadow="faulty"}')
    enqueued = _metric(h, 'shadowlane_shadow_enqueued_total{endpoint="credit",shadow="faulty"}')
    assert dropped >= N - 2 and dropped + enqueued == N


def test_missing_shadow_model(baseline: list, onnx_models: dict[str, Path], tmp_path: Path,
                              proxy_server: Callable[..., ProxyHandle]) -> None:
    model = {"name": "gone", "version": 4, "backend": {"type": "onnx", "path": str(tmp_path / "no-such.onnx")}}
    h = proxy_server(_faulty_config(onnx_models, tmp_path / "log", model))
    assert _run(h) == baseline
    assert _wait_metric(h, 'shadowlane_shadow_failed_total{endpoint="credit",reason="error",shadow="faulty"}', N) == N
    h.stop()
    from shadowlane.record import decode
    from shadowlane.segments import read_lines

    records = [decode(l) for l in read_lines(tmp_path / "log")]
    assert len(records) == N
    assert all(r["shadow"]["status"] == "error" and "unavailable" in r["shadow"]["error"] for r in records)
