"""The Grafana dashboard only queries metrics the proxy really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import numpy as np

from proxy.app import build_app
from proxy.config import parse_config
from shadowlane.demo_models import synth_applicants
from tests.fixtures.proxy import REPO, base_config, oip_body

DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "shadowlane.json"


async def test_dashboard_metrics_exist(onnx_models: dict[str, Path], tmp_path: Path) -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    wanted = {m for e in exprs for m in re.findall(r"shadowlane_[a-z_]+", e)}
    assert len(wanted) >= 10
    app = build_app(parse_config(base_config(onnx_models, tmp_path / "log", shadows=[{"model": "credit-v2"}])))
    await app.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            r = await c.post("/v2/models/credit/infer", json=oip_body(synth_applicants(2, np.random.default_rng(0))),
                             headers={"x-user-id": "u"})
            assert r.status_code == 200
            await app.dispatcher.drain(5)
            exported = set(re.findall(r"^(shadowlane_[a-z_]+)", (await c.get("/metrics")).text, re.M))
    finally:
        await app.stop()
    assert wanted <= exported, wanted - exported
    assert {p["datasource"]["uid"] for p in dash["panels"]} == {"prom"}
