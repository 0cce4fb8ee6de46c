"""Where in-process shadows run: `auto` puts small ONNX models inline and Python models in a
thread; an inline model that overruns its timeout three times is moved to a thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np

from proxy.app import build_app
from proxy.config import parse_config
from shadowlane.demo_models import synth_applicants
from tests.fixtures.proxy import base_config, oip_body


def _cfg(onnx_models: dict[str, Path], tmp_path: Path, shadows: list[dict[str, Any]], models: dict[str, Any]) -> Any:
    cfg = base_config(onnx_models, tmp_path / "log", shadows=shadows)
    cfg["models"].update(models)
    cfg["shadow"] = {"linger_ms": 0, "max_batch": 1}
    return parse_config(cfg)


async def test_auto_placement(onnx_models: dict[str, Path], tmp_path: Path) -> None:
    py = {"name": "slow", "version": 1, "backend": {"type": "python", "target": "tests.faults:SleepyModel",
                                                     "kwargs": {"seconds": 0.0}}}
    app = build_app(_cfg(onnx_models, tmp_path, [{"model": "credit-v2"}, {"model": "py"}], {"py": py}))
    await app.start()
    try:
        placed = {s.label: s.inline for s in app.deployment.endpoints["credit"].shadows}
        assert placed == {"credit-v2": True, "py": False}
    finally:
        await app.stop()


async def test_inline_overruns_move_the_model_to_a_thread(onnx_models: dict[str, Path], tmp_path: Path) -> None:
    slow = {"name": "slow", "version": 1, "backend": {"type": "python", "target": "tests.faults:SleepyModel",
                                                       "kwargs": {"seconds": 0.03}}}
    app = build_app(_cfg(onnx_models, tmp_path, [{"model": "slow", "executor": "inline", "timeout_ms": 5}],
                         {"slow": slow}))
    await app.start()
    try:
        shadow = app.deployment.endpoints["credit"].shadows[0]
        assert shadow.inline
        body = oip_body(synth_applicants(1, np.random.default_rng(0)))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            for i in range(5):
                r = await c.post("/v2/models/credit/infer", json=body, headers={"x-user-id": f"u{i}"})
                assert r.status_code == 200
                await app.dispatcher.drain(5)
        assert not shadow.inline  # demoted after three overruns
        text = (await httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t").get("/metrics")).text
        timeouts = next(l for l in text.splitlines() if l.startswith('shadowlane_shadow_failed_total{endpoint="credit",reason="timeout"'))
        assert float(timeouts.rsplit(" ", 1)[1]) >= 3
    finally:
        await app.stop()
