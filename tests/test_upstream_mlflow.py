"""A real `mlflow models serve` (sqlite registry, ONNX model) as an upstream: the backend on its
own, then as the proxy's champion with an in-process ONNX shadow beside it."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from proxy.backends.base import BackendError
from proxy.backends.http import HttpBackend
from shadowlane.demo_models import CREDIT_FEATURES, credit_model, synth_applicants
from shadowlane.record import decode
from shadowlane.segments import read_lines
from tests.fixtures.proxy import base_config, oip_body, start_proxy
from tests.fixtures.upstreams import MlflowServe, http_backend_config

pytestmark = pytest.mark.slow

X = synth_applicants(3, np.random.default_rng(11))
SPECS = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 10]}],
         "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]},
                     {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}]}


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(credit_model().SerializeToString(), providers=["CPUExecutionProvider"])
    label, proba = sess.run(None, {"features": X})
    return {"label": label, "probabilities": proba}


@pytest.mark.parametrize("columns", [None, list(CREDIT_FEATURES)], ids=["inputs", "dataframe_split"])
async def test_mlflow_upstream_matches_onnxruntime(mlflow_serve: MlflowServe, expected, columns) -> None:
    b = HttpBackend("credit-upstream", 1, http_backend_config(mlflow_serve.url, protocol="mlflow"),
                    feature_names=columns)
    await b.start()
    try:
        assert b.ready()
        assert b.inputs == () and b.outputs == ()  # MLflow serves no metadata...
        out = await b.infer({"features": X}, request_id="mlflow-1")
        assert set(out) == {"label", "probabilities"}
        assert out["label"].tolist() == expected["label"].tolist()
        np.testing.assert_allclose(out["probabilities"], expected["probabilities"], rtol=1e-6)
        # ...so the first answer teaches the shapes, with a free batch dimension.
        assert {t.name: t.shape for t in b.outputs} == {"label": (-1,), "probabilities": (-1, 2)}
        assert b.inputs[0].shape == (-1, 10) and b.batchable
    finally:
        await b.close()


async def test_mlflow_schema_error_passes_through_as_400(mlflow_serve: MlflowServe) -> None:
    b = HttpBackend("credit-upstream", 1, http_backend_config(mlflow_serve.url, protocol="mlflow", **SPECS))
    await b.start()
    try:
        with pytest.raises(BackendError) as e:
            await b.infer({"features": X[:, :3]})
        assert e.value.status == 400 and e.value.upstream == mlflow_serve.url
        assert "does not match expected shape" in str(e.value)
        assert b.breaker.state == "closed" and b.ready()
        out = await b.infer({"features": X})  # config override fixes the output dtypes
        assert out["probabilities"].dtype == np.float32 and out["label"].dtype == np.int64
    finally:
        await b.close()


def test_proxy_with_mlflow_champion_and_onnx_shadow(mlflow_serve: MlflowServe, onnx_models: dict[str, Path],
                                                    tmp_path: Path, expected) -> None:
    cfg = base_config(onnx_models, tmp_path / "log", shadows=[{"model": "credit-v2", "fraction": 1.0}])
    cfg["models"]["credit-v1"]["backend"] = {"type": "http", "protocol": "mlflow", "url": mlflow_serve.url, **SPECS}
    proxy = start_proxy(cfg, tmp_path)
    try:
        with httpx.Client(base_url=proxy.url, timeout=10) as c:
            r = c.post("/v2/models/credit/infer", json=oip_body(X), headers={"x-request-id": "via-mlflow-1"})
            assert r.status_code == 200, r.text
            served = {o["name"]: o for o in r.json()["outputs"]}
            assert served["label"]["data"] == expected["label"].tolist()
            assert served["probabilities"]["datatype"] == "FP32"
            # The same model through MLflow's own protocol on the proxy (MLflow → MLflow).
            r2 = c.post("/invocations", json={"dataframe_split": {"columns": list(CREDIT_FEATURES),
                                                                  "data": X.tolist()}})
            assert r2.status_code == 200, r2.text
            assert r2.json()["predictions"]["label"] == expected["label"].tolist()
    finally:
        proxy.stop()
    records = [decode(line) for line in read_lines(tmp_path / "log")]
    mine = [rec for rec in records if rec["request_id"] == "via-mlflow-1"]
    assert len(mine) == 1
    rec = mine[0]
    assert rec["champion"]["status"] == "ok" and rec["shadow"]["status"] == "ok"
    assert rec["champion"]["outputs"]["label"] == expected["label"].tolist()
    assert rec["shadow"]["version"] == 2 and set(rec["shadow"]["outputs"]) == {"label", "probabilities"}
    assert len(rec["shadow"]["outputs"]["probabilities"]) == 3
