"""A real uvicorn server on loopback: OIP and MLflow scoring, checked field by field."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import jsonschema
import numpy as np
import onnxruntime as ort
import pytest

from router import Arm, Assigner
from shadowlane.demo_models import CREDIT_FEATURES, synth_applicants
from shadowlane.record import decode, json_schema
from shadowlane.segments import read_lines
from tests.fixtures.proxy import ProxyHandle, base_config, oip_body, start_proxy


@pytest.fixture(scope="module")
def server(onnx_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyHandle]:
    work = tmp_path_factory.mktemp("e2e")
    cfg = base_config(onnx_models, work / "log", shadows=[{"model": "credit-v2", "fraction": 1.0}],
                      challengers=[{"model": "credit-v3", "fraction": 0.3}],
                      attribute_headers={"segment": "x-segment"})
    h = start_proxy(cfg, work)
    yield h
    h.stop()


@pytest.fixture(scope="module")
def client(server: ProxyHandle) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def sessions(onnx_models: dict[str, Path]) -> dict[str, ort.InferenceSession]:
    return {k: ort.InferenceSession(str(p)) for k, p in onnx_models.items()}


ROWS = synth_applicants(3, np.random.default_rng(7))
CHAMPION_UNIT = next(f"user-{i}" for i in range(100) if Assigner("credit", [Arm("credit-v3", 0.3)]).arm(f"user-{i}") == 0)
CHALLENGER_UNIT = next(f"user-{i}" for i in range(100) if Assigner("credit", [Arm("credit-v3", 0.3)]).arm(f"user-{i}") == 1)


def test_health_and_server_metadata(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    meta = client.get("/v2").json()
    assert meta["name"] == "shadowlane" and "version" in meta
    assert client.get("/ping").status_code == 200


def test_model_metadata_and_ready(client: httpx.Client) -> None:
    meta = client.get("/v2/models/credit").json()
    assert meta == {
        "name": "credit", "versions": ["1", "3"], "platform": "onnxruntime_onnx",
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 10]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}],
    }
    assert client.get("/v2/models/credit/versions/3").json()["versions"] == ["3"]
    assert client.get("/v2/models/credit/ready").json() == {"name": "credit", "ready": True}
    assert client.get("/v2/models/credit/versions/1/ready").status_code == 200
    r = client.get("/v2/models/credit/versions/7/ready")
    assert r.status_code == 404 and "unknown version '7'" in r.json()["error"]


def test_oip_infer_field_by_field(client: httpx.Client, sessions: dict[str, ort.InferenceSession]) -> None:
    r = client.post("/v2/models/credit/infer", json=oip_body(ROWS, req_id="req-42"),
                    headers={"x-user-id": CHAMPION_UNIT, "x-request-id": "trace-1"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-request-id"] == "trace-1"
    assert (r.headers["x-shadowlane-model"], r.headers["x-shadowlane-version"],
            r.headers["x-shadowlane-variant"]) == ("credit-risk", "1", "champion")
    body = r.json()
    assert set(body) == {"model_name", "model_version", "id", "outputs"}
    assert (body["model_name"], body["model_version"], body["id"]) == ("credit", "1", "req-42")
    label, proba = sessions["champion"].run(None, {"features": ROWS})
    out = {o["name"]: o for o in body["outputs"]}
    assert out["label"] == {"name": "label", "shape": [3], "datatype": "INT64", "data": label.tolist()}
    assert out["probabilities"]["shape"] == [3, 2] and out["probabilities"]["datatype"] == "FP32"
    assert np.array_equal(np.float32(out["probabilities"]["data"]), proba.reshape(-1))


def test_requested_outputs_only(client: httpx.Client) -> None:
    body = oip_body(ROWS) | {"outputs": [{"name": "label"}]}
    r = client.post("/v2/models/credit/infer", json=body, headers={"x-user-id": CHAMPION_UNIT})
    assert [o["name"] for o in r.json()["outputs"]] == ["label"]
    assert "id" not in r.json()  # no id sent, none echoed


def test_challenger_routing_is_sticky_and_labelled(client: httpx.Client, sessions: dict[str, ort.InferenceSession]) -> None:
    seen = {client.post("/v2/models/credit/infer", json=oip_body(ROWS), headers={"x-user-id": CHALLENGER_UNIT})
            .headers["x-shadowlane-version"] for _ in range(5)}
    assert seen == {"3"}
    r = client.post("/v2/models/credit/infer", json=oip_body(ROWS), headers={"x-user-id": CHALLENGER_UNIT})
    assert r.headers["x-shadowlane-variant"] == "credit-v3"
    _, proba = sessions["challenger"].run(None, {"features": ROWS})
    got = {o["name"]: o["data"] for o in r.json()["outputs"]}["probabilities"]
    assert np.array_equal(np.float32(got), proba.reshape(-1))


def test_pinned_version_bypasses_routing(client: httpx.Client) -> None:
    r = client.post("/v2/models/credit/versions/1/infer", json=oip_body(ROWS), headers={"x-user-id": CHALLENGER_UNIT})
    assert r.status_code == 200 and r.json()["model_version"] == "1"
    r = client.post("/v2/models/credit/versions/3/infer", json=oip_body(ROWS))
    assert r.json()["model_version"] == "3"


def test_unit_id_from_query_and_parameters(client: httpx.Client) -> None:
    r = client.post(f"/v2/models/credit/infer?user_id={CHALLENGER_UNIT}", json=oip_body(ROWS))
    assert r.headers["x-shadowlane-variant"] == "credit-v3"
    body = oip_body(ROWS) | {"parameters": {"user_id": CHALLENGER_UNIT}}
    assert client.post("/v2/models/credit/infer", json=body).headers["x-shadowlane-variant"] == "credit-v3"
    # No unit id at all: the champion, never a challenger.
    assert client.post("/v2/models/credit/infer", json=oip_body(ROWS)).headers["x-shadowlane-variant"] == "champion"


@pytest.mark.parametrize("payload", [
    {"dataframe_split": {"columns": list(CREDIT_FEATURES), "data": ROWS.tolist()}},
    {"dataframe_split": {"columns": list(reversed(CREDIT_FEATURES)), "data": ROWS[:, ::-1].tolist()}},
    {"dataframe_records": [dict(zip(CREDIT_FEATURES, map(float, row))) for row in ROWS]},
    {"instances": ROWS.tolist()},
    {"inputs": ROWS.tolist()},
    {"inputs": {"features": ROWS.tolist()}},
], ids=["split", "split-reordered", "records", "instances", "inputs", "inputs-named"])
def test_mlflow_invocations(client: httpx.Client, sessions: dict[str, ort.InferenceSession], payload: dict) -> None:
    r = client.post("/invocations", json=payload, headers={"x-user-id": CHAMPION_UNIT})
    assert r.status_code == 200, r.text
    label, proba = sessions["champion"].run(None, {"features": ROWS})
    preds = r.json()["predictions"]
    assert preds["label"] == label.tolist()
    assert np.array_equal(np.float32(preds["probabilities"]), proba)
    assert r.headers["x-shadowlane-version"] == "1"


def test_shadow_log_records(server: ProxyHandle, client: httpx.Client) -> None:
    rid = "shadow-check-1"
    r = client.post("/v2/models/credit/infer", json=oip_body(ROWS),
                    headers={"x-user-id": CHAMPION_UNIT, "x-request-id": rid, "x-segment": "small_business"})
    assert r.status_code == 200
    server.stop()  # graceful: drains the shadow queue and seals the segment
    records = [decode(line) for line in read_lines(server.config_path.parent / "log")]
    schema = json_schema()
    for rec in records:
        jsonschema.validate(rec, schema)
    mine = [rec for rec in records if rec["request_id"] == rid]
    assert len(mine) == 1
    rec = mine[0]
    assert rec["unit_id"] == CHAMPION_UNIT and rec["endpoint"] == "credit" and rec["rows"] == 3
    assert rec["attributes"] == {"segment": "small_business"}
    assert (rec["champion"]["model"], rec["champion"]["version"]) == ("credit-risk", 1)
    assert (rec["shadow"]["model"], rec["shadow"]["version"], rec["shadow"]["status"]) == ("credit-risk", 2, "ok")
    served = {o["name"]: o["data"] for o in r.json()["outputs"]}
    assert rec["champion"]["outputs"]["label"] == served["label"]
    assert np.float32(rec["features"]["age"]).tolist() == ROWS[:, 0].tolist()
    assert rec["features_hash"].startswith("xxh3:")
    # Challenger-served requests are not mirrored; every champion-served one is (fraction 1.0).
    variants = {r["champion"]["variant"] for r in records}
    assert variants == {"champion"}
