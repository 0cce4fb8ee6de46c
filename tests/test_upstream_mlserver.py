"""A real Seldon MLServer (own venv, scripts/mlserver_venv.sh) as an Open Inference Protocol
upstream: the backend on its own, then as a remote shadow of an in-process ONNX champion."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest

from proxy.backends.base import BackendError
from proxy.backends.http import HttpBackend
from shadowlane.demo_models import synth_applicants
from shadowlane.record import decode
from shadowlane.segments import read_lines
from tests.fixtures.proxy import base_config, oip_body, start_proxy
from tests.fixtures.upstreams import MLServerUpstream, http_backend_config

pytestmark = pytest.mark.slow

X = synth_applicants(4, np.random.default_rng(5))


@pytest.fixture(scope="module")
def expected(mlserver_upstream: MLServerUpstream) -> list[int]:
    """The model's own predictions, computed by scikit-learn in MLServer's venv."""
    py = Path(mlserver_upstream.process.args[0]).parent / "python"
    model = Path(mlserver_upstream.process.args[2]) / "lr" / "model.joblib"
    code = ("import joblib, json, sys, numpy as np; m = joblib.load(sys.argv[1]); "
            "print(json.dumps(m.predict(np.asarray(json.loads(sys.argv[2]), np.float32)).tolist()))")
    out = subprocess.run([str(py), "-c", code, str(model), json.dumps(X.tolist())], check=True,
                         capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout)


async def test_mlserver_upstream_infer(mlserver_upstream: MLServerUpstream, expected: list[int]) -> None:
    b = HttpBackend("credit-lr", 1, http_backend_config(mlserver_upstream.url, remote_model="lr"))
    await b.start()
    try:
        assert b.ready()
        out = await b.infer({"input-0": X}, request_id="mls-1")
        (name,) = out
        assert name == "predict"  # MLServer's sklearn runtime names its default output
        assert out[name].reshape(-1).tolist() == expected
    finally:
        await b.close()


async def test_mlserver_model_failure_is_502_naming_it(mlserver_upstream: MLServerUpstream) -> None:
    b = HttpBackend("credit-lr", 1, http_backend_config(mlserver_upstream.url, remote_model="lr"))
    await b.start()
    try:
        # scikit-learn raises inside MLServer (3 features, model takes 10); MLServer answers 500.
        with pytest.raises(BackendError) as e:
            await b.infer({"input-0": X[:, :3]})
        assert e.value.status == 502 and e.value.upstream == mlserver_upstream.url
        assert f"upstream credit-lr at {mlserver_upstream.url} answered 500" in str(e.value)
        assert b.breaker.consecutive_failures == 1
        await b.infer({"input-0": X})  # the server itself is fine: one success resets the count
        assert b.breaker.consecutive_failures == 0
    finally:
        await b.close()


def test_mlserver_as_remote_shadow(mlserver_upstream: MLServerUpstream, onnx_models: dict[str, Path],
                                   tmp_path: Path, expected: list[int]) -> None:
    cfg = base_config(onnx_models, tmp_path / "log", shadows=[{"model": "credit-lr", "fraction": 1.0}])
    cfg["models"]["credit-lr"] = {"name": "credit-lr", "version": 1, "backend": {
        "type": "http", "protocol": "oip", "url": mlserver_upstream.url, "remote_model": "lr"}}
    proxy = start_proxy(cfg, tmp_path)
    try:
        with httpx.Client(base_url=proxy.url, timeout=10) as c:
            r = c.post("/v2/models/credit/infer", json=oip_body(X), headers={"x-request-id": "mls-shadow-1"})
            assert r.status_code == 200, r.text
    finally:
        proxy.stop()
    rec = next(decode(line) for line in read_lines(tmp_path / "log")
               if decode(line)["request_id"] == "mls-shadow-1")
    assert rec["champion"]["status"] == "ok" and rec["champion"]["version"] == 1
    assert rec["shadow"]["model"] == "credit-lr" and rec["shadow"]["status"] == "ok", rec["shadow"]
    assert np.asarray(rec["shadow"]["outputs"]["predict"]).reshape(-1).tolist() == expected
