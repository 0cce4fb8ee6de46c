"""Bad input gets a clear error in the protocol's own format, and the server keeps serving."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest

from shadowlane.demo_models import synth_applicants
from tests.fixtures.proxy import base_config, oip_body, start_proxy

ROWS = synth_applicants(2, np.random.default_rng(1))
GOOD = oip_body(ROWS)


@pytest.fixture(scope="module")
def client(onnx_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    work = tmp_path_factory.mktemp("errors")
    h = start_proxy(base_config(onnx_models, work / "log", shadows=[{"model": "credit-v2"}]), work)
    with h.client() as c:
        yield c
    h.stop()


def _inp(**over: Any) -> dict[str, Any]:
    base = {"name": "features", "shape": [2, 10], "datatype": "FP32", "data": ROWS.reshape(-1).tolist()}
    return {"inputs": [base | over]}


OIP_CASES = [
    ("malformed-json", b'{"inputs": [', 400, "malformed JSON"),
    ("not-an-object", b"[1, 2]", 400, "JSON object"),
    ("no-inputs", b"{}", 400, "non-empty 'inputs'"),
    ("wrong-datatype", _inp(datatype="FP64"), 400, "datatype FP64 does not match the model's FP32"),
    ("unknown-datatype", _inp(datatype="FLOAT"), 400, "unknown datatype 'FLOAT'"),
    ("wrong-width", _inp(shape=[4, 5]), 400, "shape [4, 5] does not match the model's [-1, 10]"),
    ("count-mismatch", _inp(shape=[3, 10]), 400, "needs 30 values, data has 20"),
    ("not-numbers", _inp(data=["a"] * 20), 400, "not valid float32"),
    ("unknown-input", _inp(name="feats"), 400, "unknown input 'feats'"),
    ("missing-data", {"inputs": [{"name": "features", "shape": [2, 10], "datatype": "FP32"}]}, 400, "'data' is missing"),
    ("bad-shape", _inp(shape="2x10"), 400, "'shape' must be a list"),
    ("binary-extension", _inp(parameters={"binary_data_size": 80}), 400, "binary tensor extension"),
    ("unknown-output", GOOD | {"outputs": [{"name": "score"}]}, 400, "unknown output(s) ['score']"),
]


@pytest.mark.parametrize("case", OIP_CASES, ids=[c[0] for c in OIP_CASES])
def test_oip_bad_input(client: httpx.Client, case: tuple) -> None:
    _, payload, status, message = case
    kw = {"content": payload} if isinstance(payload, bytes) else {"json": payload}
    r = client.post("/v2/models/credit/infer", **kw)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == ["error"] and message in body["error"], body
    assert r.headers["x-request-id"]
    # ...and the server keeps serving.
    assert client.post("/v2/models/credit/infer", json=GOOD).status_code == 200


def test_missing_inputs(onnx_models: dict[str, Path], tmp_path: Path, proxy_server) -> None:  # type: ignore[no-untyped-def]
    """A two-input ONNX model: a request naming only one input is told which one is missing."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"])], "adder",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 1]) for n in ("a", "b")],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "adder.onnx"))
    cfg = {"sink": {"type": "none"},
           "models": {"adder-v1": {"name": "adder", "version": 1, "backend": {"type": "onnx", "path": str(tmp_path / "adder.onnx")}}},
           "endpoints": {"adder": {"champion": "adder-v1"}}}
    with proxy_server(cfg).client() as c:
        one = {"name": "a", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}
        r = c.post("/v2/models/adder/infer", json={"inputs": [one]})
        assert r.status_code == 400 and r.json()["error"] == "missing input(s) ['b']; the model takes ['a', 'b']"
        r = c.post("/v2/models/adder/infer", json={"inputs": [one, one | {"name": "b", "data": [2.0]}]})
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [3.0]


def test_unknown_model_and_version(client: httpx.Client) -> None:
    r = client.post("/v2/models/fraud/infer", json=GOOD)
    assert r.status_code == 404 and r.json() == {"error": "unknown model 'fraud'; this server serves ['credit']"}
    r = client.post("/v2/models/credit/versions/9/infer", json=GOOD)
    assert r.status_code == 404 and "unknown version '9'" in r.json()["error"]
    r = client.get("/v2/models/fraud")
    assert r.status_code == 404 and "unknown model 'fraud'" in r.json()["error"]
    r = client.get("/v2/nothing/here")
    assert r.status_code == 404 and "error" in r.json()


def test_wrong_method(client: httpx.Client) -> None:
    r = client.get("/v2/models/credit/infer")
    assert r.status_code == 405 and "use POST" in r.json()["error"]


def test_oversized_body_413(client: httpx.Client) -> None:
    big = oip_body(synth_applicants(2000, np.random.default_rng(2)))  # ~400 KB > 64 KiB limit
    r = client.post("/v2/models/credit/infer", json=big)
    assert r.status_code == 413
    assert "exceeds the limit of 65536 bytes (server.max_body_bytes)" in r.json()["error"]

    def chunks():  # no content-length: the limit is enforced while reading
        for _ in range(100):
            yield b" " * 1024

    r = client.post("/v2/models/credit/infer", content=chunks())
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]
    r = client.post("/invocations", json={"inputs": synth_applicants(2000, np.random.default_rng(2)).tolist()})
    assert r.status_code == 413 and r.json()["error_code"] == "BAD_REQUEST"
    assert client.post("/v2/models/credit/infer", json=GOOD).status_code == 200


MLFLOW_CASES = [
    ("malformed-json", b"{nope", 400, "malformed JSON"),
    ("two-keys", {"inputs": [[1] * 10], "instances": [[1] * 10]}, 400, "exactly one of the input fields"),
    ("no-key", {"data": [[1] * 10]}, 400, "exactly one of the input fields"),
    ("wrong-width", {"inputs": [[1.0] * 9]}, 400, "shape [1, 9] does not match"),
    ("ragged", {"instances": [[1.0] * 10, [1.0] * 9]}, 400, "not a rectangular float32 array"),
    ("wrong-columns", {"dataframe_split": {"columns": ["a"] * 10, "data": [[1.0] * 10]}}, 400, "do not match the model's features"),
    ("missing-column", {"dataframe_records": [{"age": 1.0}]}, 400, "missing column 'income_k'"),
    ("unknown-input", {"inputs": {"x": [[1.0] * 10]}}, 400, "unknown input(s) ['x']"),
]


@pytest.mark.parametrize("case", MLFLOW_CASES, ids=[c[0] for c in MLFLOW_CASES])
def test_mlflow_bad_input(client: httpx.Client, case: tuple) -> None:
    _, payload, status, message = case
    kw = {"content": payload, "headers": {"content-type": "application/json"}} if isinstance(payload, bytes) else {"json": payload}
    r = client.post("/invocations", **kw)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error_code"] == "BAD_REQUEST" and message in body["message"], body
    assert client.post("/invocations", json={"inputs": ROWS.tolist()}).status_code == 200


def test_mlflow_unsupported_content_type_415(client: httpx.Client) -> None:
    r = client.post("/invocations", content=b"age,income\n1,2\n", headers={"content-type": "text/csv"})
    assert r.status_code == 415 and "text/csv" in r.json()["message"]


def test_errors_are_counted(client: httpx.Client) -> None:
    client.post("/v2/models/credit/infer", content=b"{")
    text = client.get("/metrics").text
    line = next(l for l in text.splitlines()
                if l.startswith('shadowlane_requests_total{code="400",endpoint="credit"'))
    assert float(line.rsplit(" ", 1)[1]) >= 1
