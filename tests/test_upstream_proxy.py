"""The proxy in front of failing upstreams (real loopback servers): a champion upstream's faults
become clear protocol errors naming it and readiness follows it; a shadow upstream's faults stay
off the champion path and are recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np

from shadowlane.demo_models import synth_applicants
from shadowlane.record import decode
from shadowlane.segments import read_lines
from tests.fixtures.proxy import base_config, oip_body, start_proxy
from tests.fixtures.upstreams import Received, oip_answer, oip_server

X = synth_applicants(2, np.random.default_rng(9))


async def test_champion_upstream_faults_and_readiness(loopback_http, onnx_models: dict[str, Path],
                                                      tmp_path: Path) -> None:
    mode = "ok"

    async def infer(req: Received) -> tuple[int, bytes]:
        if mode == "stall":
            await asyncio.sleep(5)
        if mode == "500":
            return 500, b'{"error": "model server exploded"}'
        if mode == "400":
            return 400, b'{"error": "features[3] must be finite"}'
        return 200, oip_answer(req)

    srv = await loopback_http(oip_server(infer))
    cfg = base_config(onnx_models, tmp_path / "log")
    cfg["models"]["credit-v1"]["backend"] = {"type": "http", "url": srv.url, "remote_model": "credit",
                                             "timeout_ms": 300, "breaker_failures": 2,
                                             "breaker_cooldown_ms": 300}
    proxy = await asyncio.to_thread(start_proxy, cfg, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as c:
            async def call() -> httpx.Response:
                return await c.post("/v2/models/credit/infer", json=oip_body(X))

            r = await call()
            assert r.status_code == 200 and [o["name"] for o in r.json()["outputs"]] == ["label", "probabilities"]

            mode = "400"
            r = await call()
            assert r.status_code == 400 and "features[3] must be finite" in r.json()["error"]

            mode = "stall"
            r = await call()
            assert r.status_code == 504 and srv.url in r.json()["error"] and "300 ms" in r.json()["error"]

            mode = "500"
            r = await call()  # the second consecutive failure (timeout, then 500) opens the breaker...
            assert r.status_code == 502 and "model server exploded" in r.json()["error"]
            r = await call()
            assert r.status_code == 503 and "circuit breaker open" in r.json()["error"]
            assert srv.url in r.json()["error"]
            # ...and the proxy stops reporting ready while its champion cannot answer.
            assert (await c.get("/v2/health/ready")).status_code == 503

            mode = "ok"
            await asyncio.sleep(0.35)
            r = await call()  # the half-open trial succeeds
            assert r.status_code == 200
            assert (await c.get("/v2/health/ready")).status_code == 200
            r = await c.post("/invocations", json={"inputs": X.tolist()})  # MLflow client → OIP upstream
            assert r.status_code == 200 and len(r.json()["predictions"]["label"]) == 2
    finally:
        await asyncio.to_thread(proxy.stop)
    assert "Traceback" not in proxy.output()


async def test_shadow_upstream_down_stays_off_the_champion_path(down_url: str, onnx_models: dict[str, Path],
                                                                tmp_path: Path) -> None:
    cfg = base_config(onnx_models, tmp_path / "log", shadows=[{"model": "remote-shadow", "fraction": 1.0}])
    cfg["models"]["remote-shadow"] = {"name": "credit-risk", "version": 9, "backend": {
        "type": "http", "url": down_url, "remote_model": "credit",
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 10]}]}}
    proxy = await asyncio.to_thread(start_proxy, cfg, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as c:
            for i in range(3):
                r = await c.post("/v2/models/credit/infer", json=oip_body(X), headers={"x-request-id": f"sd-{i}"})
                assert r.status_code == 200
            assert (await c.get("/v2/health/ready")).status_code == 200  # only champions count
            for _ in range(100):  # shadows run after the responses: wait until all three are counted
                metrics = (await c.get("/metrics")).text
                failed = [line for line in metrics.splitlines()
                          if line.startswith("shadowlane_shadow_failed_total{") and 'reason="error"' in line]
                if failed and float(failed[0].rsplit(" ", 1)[1]) >= 3:
                    break
                await asyncio.sleep(0.05)
            assert failed and float(failed[0].rsplit(" ", 1)[1]) == 3, failed
    finally:
        await asyncio.to_thread(proxy.stop)
    recs = {r["request_id"]: r for r in map(decode, read_lines(tmp_path / "log"))}
    for i in range(3):
        rec = recs[f"sd-{i}"]
        assert rec["champion"]["status"] == "ok"
        assert rec["shadow"]["status"] == "error" and rec["shadow"]["outputs"] is None
        assert down_url in rec["shadow"]["error"]


async def test_trace_headers_pass_through_the_proxy(loopback_http, onnx_models: dict[str, Path],
                                                    tmp_path: Path) -> None:
    """x-request-id and W3C trace context reach the champion upstream; credentials do not."""
    srv = await loopback_http(oip_server())
    cfg = base_config(onnx_models, tmp_path / "log")
    cfg["models"]["credit-v1"]["backend"] = {"type": "http", "url": srv.url, "remote_model": "credit"}
    proxy = await asyncio.to_thread(start_proxy, cfg, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as c:
            tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            r = await c.post("/v2/models/credit/infer", json=oip_body(X), headers={
                "traceparent": tp, "x-request-id": "trace-me", "authorization": "Bearer secret"})
            assert r.status_code == 200
            seen = [q.headers for q in srv.received if q.path.endswith("/infer")][-1]
            assert seen["traceparent"] == tp and seen["x-request-id"] == "trace-me"
            assert "authorization" not in seen
            r = await c.post("/v2/models/credit/infer", json=oip_body(X))  # no id from the client
            seen = [q.headers for q in srv.received if q.path.endswith("/infer")][-1]
            assert seen["x-request-id"] == r.headers["x-request-id"]
    finally:
        await asyncio.to_thread(proxy.stop)
