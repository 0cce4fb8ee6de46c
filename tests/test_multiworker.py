"""Two uvicorn worker processes: every response is served, and /metrics sums both workers."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from shadowlane.demo_models import synth_applicants
from shadowlane.record import decode
from shadowlane.segments import read_lines
from tests.fixtures.proxy import ProxyHandle, base_config, oip_body


def test_two_workers_share_metrics_and_log(onnx_models: dict[str, Path], tmp_path: Path,
                                           proxy_server: Callable[..., ProxyHandle]) -> None:
    cfg = base_config(onnx_models, tmp_path / "log", shadows=[{"model": "credit-v2"}])
    h = proxy_server(cfg, workers=2)
    n = 60
    rows = synth_applicants(1, np.random.default_rng(3))
    for i in range(n):
        with h.client() as c:  # new connections, so both workers get some
            assert c.post("/v2/models/credit/infer", json=oip_body(rows), headers={"x-user-id": f"u{i}"}).status_code == 200
    with h.client() as c:
        text = c.get("/metrics").text
    total = sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                if l.startswith('shadowlane_requests_total{code="200",endpoint="credit",variant="champion"'))
    assert total == n
    h.stop()
    # Each worker writes its own segments in the same directory, without clobbering the other's.
    records = [decode(l) for l in read_lines(tmp_path / "log")]
    assert len(records) == n and len({r["request_id"] for r in records}) == n
