"""Through the real proxy to a real broker: in-process shadows write N shadow records for N
requests, and decoupled mode (proxy publishes requests, two shadow-workers in one group run
them) yields each shadow record once after de-duplication."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import jsonschema
import numpy as np
import pytest
import yaml

from shadowlane.demo_models import synth_applicants
from shadowlane.record import decode, dedup, json_schema
from tests.fixtures.kafka import KafkaBroker, create_topic, read_topic
from tests.fixtures.proxy import REPO, ProxyHandle, base_config, oip_body

pytestmark = pytest.mark.kafka
N = 60


def _kafka_config(onnx_models: dict[str, Path], tmp_path: Path, broker: KafkaBroker, topic: str,
                  requests_topic: str, mode: str) -> dict:
    cfg = base_config(onnx_models, tmp_path / "unused", shadows=[{"model": "credit-v2"}])
    cfg["sink"] = {"type": "kafka", "bootstrap_servers": broker.bootstrap, "topic": topic,
                   "requests_topic": requests_topic, "mode": mode, "linger_ms": 5,
                   "spill_directory": str(tmp_path / "spill")}
    return cfg


def _send(h: ProxyHandle) -> dict[str, list[int]]:
    labels = {}
    rows = synth_applicants(N, np.random.default_rng(11))
    with h.client() as c:
        for i in range(N):
            r = c.post("/v2/models/credit/infer", json=oip_body(rows[i:i + 1]),
                       headers={"x-user-id": f"user-{i % 7}", "x-request-id": f"req-{i}"})
            assert r.status_code == 200
            labels[f"req-{i}"] = {o["name"]: o["data"] for o in r.json()["outputs"]}["label"]
    return labels


def test_in_process_shadows_to_kafka(kafka_broker: KafkaBroker, kafka_topic: Callable[..., str],
                                     onnx_models: dict[str, Path], tmp_path: Path,
                                     proxy_server: Callable[..., ProxyHandle]) -> None:
    topic = kafka_topic("shadow")
    asyncio.run(create_topic(kafka_broker.bootstrap, topic, partitions=3))
    h = proxy_server(_kafka_config(onnx_models, tmp_path, kafka_broker, topic, kafka_topic("req"), "inprocess"))
    labels = _send(h)
    assert h.stop() == 0
    msgs = asyncio.run(read_topic(kafka_broker.bootstrap, topic, expect=N))
    records = [decode(v) for _, _, v in msgs]
    assert len(records) == N  # exactly N: none lost, none duplicated
    schema = json_schema()
    for (_, key, _), rec in zip(msgs, records):
        jsonschema.validate(rec, schema)
        assert key == rec["unit_id"].encode()
        assert rec["champion"]["outputs"]["label"] == labels[rec["request_id"]]
    # Keyed by unit: per unit, records sit in one partition, in request order.
    by_unit: dict[str, list[tuple[int, int]]] = {}
    for part, _, v in msgs:
        rec = decode(v)
        by_unit.setdefault(rec["unit_id"], []).append((part, int(rec["request_id"].split("-")[1])))
    for seq in by_unit.values():
        assert len({p for p, _ in seq}) == 1
        assert [i for _, i in seq] == sorted(i for _, i in seq)


def test_decoupled_mode_two_workers(kafka_broker: KafkaBroker, kafka_topic: Callable[..., str],
                                    onnx_models: dict[str, Path], tmp_path: Path,
                                    proxy_server: Callable[..., ProxyHandle]) -> None:
    topic, req_topic = kafka_topic("shadow"), kafka_topic("requests")
    asyncio.run(create_topic(kafka_broker.bootstrap, req_topic, partitions=2))
    asyncio.run(create_topic(kafka_broker.bootstrap, topic, partitions=2))
    cfg = _kafka_config(onnx_models, tmp_path, kafka_broker, topic, req_topic, "decoupled")
    h = proxy_server(cfg)
    labels = _send(h)
    assert h.stop() == 0
    published = asyncio.run(read_topic(kafka_broker.bootstrap, req_topic, expect=N))
    assert len(published) == N
    cfg_path = tmp_path / "worker.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    group = f"g-{topic}"
    workers = [subprocess.Popen([sys.executable, "-m", "shadowlane", "shadow-worker", "--config", str(cfg_path),
                                 "--group", group], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        msgs = asyncio.run(read_topic(kafka_broker.bootstrap, topic, expect=N, timeout_s=90))
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(20)
            except subprocess.TimeoutExpired:
                w.kill()
    records = list(dedup(decode(v) for _, _, v in msgs))
    assert sorted(r["request_id"] for r in records) == sorted(labels)
    for rec in records:
        jsonschema.validate(rec, json_schema())
        assert rec["shadow"]["status"] == "ok" and rec["shadow"]["version"] == 2
        assert rec["champion"]["outputs"]["label"] == labels[rec["request_id"]]
