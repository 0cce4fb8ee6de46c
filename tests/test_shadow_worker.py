"""Decoupled shadow mode for real: the proxy publishes request records, two `shadowlane
shadow-worker` processes in one consumer group run the shadow model, and after de-duplication
by request id every request has exactly one shadow record, with the shadow model's outputs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import onnxruntime as ort
import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError
from aiokafka.partitioner import murmur2

from proxy.shadow_worker import from_tensor, tensor
from shadowlane.demo_models import synth_applicants
from shadowlane.record import decode, decode_request, dedup, json_schema, request_json_schema
from tests.fixtures.kafka import KafkaBroker, create_topic, read_topic
from tests.fixtures.proxy import REPO, oip_body
from tests.test_kafka_proxy import kafka_config

pytestmark = pytest.mark.kafka

UNITS = [f"user-{u}" for u in range(20)]


async def group_members(bootstrap: str, group: str) -> tuple[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (resp,) = await admin.describe_consumer_groups([group])
    except GroupCoordinatorNotAvailableError:  # a fresh broker creates __consumer_offsets first
        return "NoCoordinator", 0
    finally:
        await admin.close()
    _, _, state, _, _, members, *_ = resp.groups[0]
    return state, len(members)


def start_worker(config: Path, group: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "shadowlane", "shadow-worker", "--config", str(config),
                                 "--group", group], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def test_tensor_round_trip_keeps_dtype_and_shape():
    for arr in (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([[1, 2]], dtype=np.int64),
                np.array(["a", "b"], dtype=object), np.zeros((0, 4), dtype=np.float64)):
        back = from_tensor(tensor(arr))
        assert back.dtype == arr.dtype and back.shape == arr.shape and (back == arr).all()


def test_dedup_keeps_the_first_record_per_request_and_shadow():
    def rec(rid: str, model: str, version: int, n: int) -> dict:
        return {"request_id": rid, "shadow": {"model": model, "version": version}, "n": n}
    records = [rec("a", "m", 2, 0), rec("b", "m", 2, 1), rec("a", "m", 2, 2), rec("a", "m", 3, 3), rec("a", "x", 2, 4)]
    assert [r["n"] for r in dedup(records)] == [0, 1, 3, 4]  # type: ignore[arg-type]


async def test_two_workers_in_one_group_give_each_shadow_record_once(
        kafka_broker: KafkaBroker, kafka_topic, onnx_models, proxy_server, tmp_path):
    assert {(murmur2(u.encode()) & 0x7FFFFFFF) % 4 for u in UNITS} == {0, 1, 2, 3}, "keys reach every partition"
    topic, group = kafka_topic("decoupled"), kafka_topic("group")
    await create_topic(kafka_broker.bootstrap, topic + "-requests", partitions=4)
    cfg = kafka_config(onnx_models, tmp_path, kafka_broker.bootstrap, topic, mode="decoupled")
    config = tmp_path / "deploy.yaml"
    config.write_text(yaml.safe_dump(cfg))
    workers = [start_worker(config, group, tmp_path / f"worker-{i}.log") for i in range(2)]
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while await group_members(kafka_broker.bootstrap, group) != ("Stable", 2):
            assert loop.time() < deadline, "two workers never formed a stable group"
            assert all(w.poll() is None for w in workers), "a worker exited"
            await asyncio.sleep(0.3)

        proxy = proxy_server(config)
        rows = synth_applicants(50, np.random.default_rng(11))
        n = 50
        with proxy.client() as client:
            for i in range(n):
                r = client.post("/v2/models/credit/infer", json=oip_body(rows[i:i + 1]),
                                headers={"x-user-id": UNITS[i % len(UNITS)], "x-request-id": f"req-{i}"})
                assert r.status_code == 200, r.text
        assert proxy.stop() == 0

        requests = await read_topic(kafka_broker.bootstrap, topic + "-requests", expect=n)
        assert len(requests) == n
        jsonschema.validate(decode_request(requests[0][2]), request_json_schema())

        msgs = await read_topic(kafka_broker.bootstrap, topic, expect=n, timeout_s=60)
        records = list(dedup(decode(v) for _, _, v in msgs))
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(20)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()

    logs = [(tmp_path / f"worker-{i}.log").read_text() for i in range(2)]
    assert [w.returncode for w in workers] == [0, 0], logs
    assert sorted(r["request_id"] for r in records) == sorted(f"req-{i}" for i in range(n))
    shadow = ort.InferenceSession(str(onnx_models["shadow"]))
    schema = json_schema()
    for rec in records:
        jsonschema.validate(rec, schema)
        i = int(rec["request_id"][4:])
        assert rec["unit_id"] == UNITS[i % len(UNITS)]
        assert (rec["shadow"]["model"], rec["shadow"]["version"], rec["shadow"]["status"]) == ("credit-risk", 2, "ok")
        expected = shadow.run(["probabilities"], {"features": rows[i:i + 1]})[0]
        assert np.allclose(rec["shadow"]["outputs"]["probabilities"], expected, atol=1e-6)
    processed = [int(log.split("processed=")[1].split()[0]) for log in logs]
    assert all(p > 0 for p in processed) and sum(processed) >= n, f"both members worked: {processed}"


async def test_worker_records_model_failures_and_skips_what_it_cannot_use(onnx_models, tmp_path):
    """No broker needed: what one request record turns into."""
    from proxy.config import parse_config
    from proxy.shadow_worker import ShadowWorker
    from shadowlane.record import encode_request

    cfg = parse_config(kafka_config(onnx_models, tmp_path, "127.0.0.1:1", "t", mode="decoupled"))
    worker = ShadowWorker(cfg)
    await worker.start_models()
    side = {"model": "credit-risk", "version": 1, "variant": "champion", "status": "ok", "latency_ms": 0.1,
            "outputs": {"label": [0]}, "error": None}
    req = {"v": 1, "ts": 1.0, "request_id": "r1", "unit_id": "u1", "endpoint": "credit", "protocol": "oip",
           "rows": 1, "champion": side, "shadows": ["credit-v2"],
           "inputs": {"features": tensor(np.zeros((1, 3), np.float32))},  # the model wants 10 columns
           "features_hash": "xxh3:0000000000000000", "features": None, "attributes": {}}
    jsonschema.validate(decode_request(encode_request(req)), request_json_schema())  # type: ignore[arg-type]
    (value, key), = await worker._handle(encode_request(req))  # type: ignore[arg-type]
    rec = decode(value)
    jsonschema.validate(rec, json_schema())
    assert key == b"u1" and rec["shadow"]["status"] == "error" and "credit-risk v2" in rec["shadow"]["error"]
    assert rec["champion"] == side and rec["request_id"] == "r1"

    assert await worker._handle(b"not json") == []
    unknown = {**req, "shadows": ["credit-v9"]}
    assert await worker._handle(encode_request(unknown)) == []  # type: ignore[arg-type]
    assert (worker.processed, worker.skipped) == (2, 2)
    # Versioned and with inputs, yet unusable: skipped, never raised (a raise would fail the
    # session before its commit, and the record would come back for ever).
    no_shadows = {k: v for k, v in req.items() if k != "shadows"}
    for bad in (no_shadows, {**req, "inputs": []}, {**req, "unit_id": 7}, {**req, "endpoint": ["credit"]}):
        assert await worker._handle(encode_request(bad)) == []  # type: ignore[arg-type]
    assert (worker.processed, worker.skipped) == (2, 6)
