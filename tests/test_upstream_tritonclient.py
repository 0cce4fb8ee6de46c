"""NVIDIA's `tritonclient[http]` as a real client of the proxy's OIP endpoints, unchanged: health,
model metadata and infer (JSON; the binary extension is refused with a clear 400), for an
in-process ONNX champion and for a champion that is a remote MLServer."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from shadowlane.demo_models import synth_applicants
from tests.fixtures.proxy import ProxyHandle, base_config, start_proxy
from tests.fixtures.upstreams import MLServerUpstream

pytestmark = pytest.mark.slow

X = synth_applicants(3, np.random.default_rng(3))


@pytest.fixture(scope="module")
def proxy(onnx_models: dict[str, Path], mlserver_upstream: MLServerUpstream,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyHandle]:
    work = tmp_path_factory.mktemp("triton")
    cfg = base_config(onnx_models, work / "log")
    cfg["models"]["lr-remote"] = {"name": "lr", "version": 1, "backend": {
        "type": "http", "url": mlserver_upstream.url, "remote_model": "lr"}}
    cfg["endpoints"]["lr"] = {"champion": "lr-remote"}
    h = start_proxy(cfg, work)
    yield h
    h.stop()


@pytest.fixture
def client(proxy: ProxyHandle) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(url=proxy.url.removeprefix("http://"))
    yield c
    c.close()


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("credit") and client.is_model_ready("lr")
    meta = client.get_model_metadata("credit")
    assert meta["name"] == "credit"
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 10]}]
    assert {o["name"] for o in meta["outputs"]} == {"label", "probabilities"}
    assert client.get_model_metadata("lr")["name"] == "lr"
    assert not client.is_model_ready("nope")


def test_infer_json(client: triton.InferenceServerClient, onnx_models: dict[str, Path]) -> None:
    inp = triton.InferInput("features", list(X.shape), "FP32")
    inp.set_data_from_numpy(X, binary_data=False)
    outs = [triton.InferRequestedOutput("label", binary_data=False),
            triton.InferRequestedOutput("probabilities", binary_data=False)]
    res = client.infer("credit", [inp], outputs=outs, request_id="triton-1")
    label, proba = ort.InferenceSession(str(onnx_models["champion"])).run(None, {"features": X})
    assert res.get_response()["id"] == "triton-1"
    assert res.as_numpy("label").tolist() == label.tolist()
    np.testing.assert_allclose(res.as_numpy("probabilities"), proba, rtol=1e-6)


def test_infer_through_to_remote_champion(client: triton.InferenceServerClient) -> None:
    inp = triton.InferInput("input-0", list(X.shape), "FP32")
    inp.set_data_from_numpy(X, binary_data=False)
    res = client.infer("lr", [inp], outputs=[triton.InferRequestedOutput("predict", binary_data=False)])
    pred = res.as_numpy("predict")
    assert pred.shape[0] == 3 and set(pred.reshape(-1).tolist()) <= {0, 1}


def test_binary_extension_is_refused_clearly(client: triton.InferenceServerClient) -> None:
    inp = triton.InferInput("features", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)  # tritonclient's default: binary_data=True
    with pytest.raises(InferenceServerException) as e:
        client.infer("credit", [inp])
    assert "binary" in str(e.value) and "binary_data=False" in str(e.value)
