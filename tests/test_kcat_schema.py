"""A consumer nobody here wrote: kcat (librdkafka, from Debian) reads the shadow records the
proxy wrote to Kafka (gzip batches), and each validates against the published JSON Schema file."""

from __future__ import annotations

import json
import shutil
import subprocess

import jsonschema
import numpy as np
import pytest

from shadowlane.demo_models import synth_applicants
from tests.fixtures.kafka import KafkaBroker
from tests.fixtures.proxy import REPO, oip_body
from tests.test_kafka_proxy import kafka_config

pytestmark = pytest.mark.kafka

SCHEMA = REPO / "shadowlane" / "schemas" / "shadow-record.v1.json"


def test_kcat_reads_records_that_validate_against_the_published_schema(
        kafka_broker: KafkaBroker, kafka_topic, onnx_models, proxy_server, tmp_path):
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not installed: scripts/kafka.sh fetch installs it (apt-get install kcat)"
    topic = kafka_topic("kcat")
    proxy = proxy_server(kafka_config(onnx_models, tmp_path, kafka_broker.bootstrap, topic, compression="gzip"))
    rows = synth_applicants(3, np.random.default_rng(5))
    with proxy.client() as client:
        for i in range(3):
            r = client.post("/v2/models/credit/infer", json=oip_body(rows[i:i + 1]),
                            headers={"x-user-id": f"user-{i}", "x-request-id": f"kcat-{i}"})
            assert r.status_code == 200, r.text
    assert proxy.stop() == 0

    out = subprocess.run([kcat, "-b", kafka_broker.bootstrap, "-C", "-t", topic, "-o", "beginning",
                          "-c", "3", "-e", "-q", "-J"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    envelopes = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert len(envelopes) == 3
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    for env in envelopes:
        record = json.loads(env["payload"])
        validator.validate(record)
        assert env["key"] == record["unit_id"]
        assert record["shadow"]["status"] == "ok"
    assert sorted(json.loads(e["payload"])["request_id"] for e in envelopes) == ["kcat-0", "kcat-1", "kcat-2"]

    # The schema is a real check: the same record without its shadow side does not pass.
    broken = json.loads(envelopes[0]["payload"])
    del broken["shadow"]
    assert not validator.is_valid(broken)
