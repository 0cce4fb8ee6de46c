"""The real proxy (`shadowlane serve`) with the Kafka sink on the shared broker: N requests in,
exactly N shadow records on the topic, complete and in order per unit id."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import numpy as np
import pytest

from shadowlane.demo_models import synth_applicants
from shadowlane.record import decode, json_schema
from tests.fixtures.kafka import KafkaBroker, create_topic, read_topic
from tests.fixtures.proxy import base_config, oip_body

pytestmark = pytest.mark.kafka

UNITS = [f"user-{u}" for u in range(7)]


def kafka_config(models: dict[str, Path], work: Path, bootstrap: str, topic: str, **sink: object) -> dict:
    cfg = base_config(models, work / "unused", shadows=[{"model": "credit-v2", "fraction": 1.0}])
    cfg["sink"] = {"type": "kafka", "bootstrap_servers": bootstrap, "topic": topic,
                   "requests_topic": topic + "-requests", "linger_ms": 5, "request_timeout_ms": 2000,
                   "spill_directory": str(work / "spill"), **sink}
    return cfg


async def test_n_requests_give_exactly_n_shadow_records_in_order_per_key(
        kafka_broker: KafkaBroker, kafka_topic, onnx_models, proxy_server, tmp_path):
    topic = kafka_topic("proxy")
    await create_topic(kafka_broker.bootstrap, topic, partitions=3)
    proxy = proxy_server(kafka_config(onnx_models, tmp_path, kafka_broker.bootstrap, topic))
    rows = synth_applicants(4, np.random.default_rng(3))
    n = 120
    with proxy.client() as client:
        for i in range(n):
            r = client.post("/v2/models/credit/infer", json=oip_body(rows[i % 4:i % 4 + 1]),
                            headers={"x-user-id": UNITS[i % len(UNITS)], "x-request-id": f"req-{i}"})
            assert r.status_code == 200, r.text
    assert proxy.stop() == 0  # graceful: shadows drained, sink flushed

    msgs = await read_topic(kafka_broker.bootstrap, topic, expect=n)
    assert len(msgs) == n
    schema = json_schema()
    last: dict[str, int] = {}
    for _, key, value in msgs:
        rec = decode(value)
        jsonschema.validate(rec, schema)
        i = int(rec["request_id"].removeprefix("req-"))
        assert key == rec["unit_id"].encode() == UNITS[i % len(UNITS)].encode()
        assert rec["shadow"]["status"] == "ok" and rec["shadow"]["variant"] == "credit-v2"
        assert rec["champion"]["outputs"]["label"] is not None and rec["features"] is not None
        assert i > last.get(rec["unit_id"], -1), "per-key order"
        last[rec["unit_id"]] = i
    assert sorted(int(decode(v)["request_id"][4:]) for _, _, v in msgs) == list(range(n))
