"""A short headless Locust run (loadtests/locustfile.py) against a real proxy with a real Kafka sink.

Every valid request must succeed and every malformed one must get its 4xx (Locust counts both
as successes, anything else as a failure); and the topic must hold exactly one shadow record per
request the champion answered, since the shadow samples 100%.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.fixtures.kafka import create_topic, read_topic
from tests.fixtures.proxy import REPO, base_config

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_locust_headless_run_mirrors_every_champion_answer_to_kafka(
        proxy_server, onnx_models, kafka_broker, kafka_topic, tmp_path: Path) -> None:
    topic = kafka_topic("locust-records")
    asyncio.run(create_topic(kafka_broker.bootstrap, topic))
    cfg = base_config(onnx_models, tmp_path / "unused", shadows=[{"model": "credit-v2", "fraction": 1.0}],
                      invocations_endpoint="credit")
    cfg["sink"] = {"type": "kafka", "bootstrap_servers": kafka_broker.bootstrap, "topic": topic,
                   "requests_topic": kafka_topic("locust-requests"), "linger_ms": 5,
                   "spill_directory": str(tmp_path / "spill")}
    proxy = proxy_server(cfg)
    id_log = tmp_path / "champion-ids.txt"
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path), "LOCUST_WAIT_MIN": "0.02",
           "LOCUST_WAIT_MAX": "0.1", "SHADOWLANE_ID_LOG": str(id_log), "SHADOWLANE_ENDPOINT": "credit"}
    run = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(REPO / "loadtests" / "locustfile.py"), "--headless",
         "-u", "4", "-r", "4", "-t", "8s", "-H", proxy.url, "--json", "--only-summary", "--stop-timeout", "5"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, f"locust exited {run.returncode}:\n{run.stderr[-3000:]}"
    stats = {s["name"]: s for s in json.loads(run.stdout)}
    failures = {name: s["num_failures"] for name, s in stats.items() if s["num_failures"]}
    assert failures == {}, f"unexpected failures: {failures}\n{run.stderr[-3000:]}"
    valid = sum(s["num_requests"] for n, s in stats.items() if not n.startswith("malformed"))
    malformed = sum(s["num_requests"] for n, s in stats.items() if n.startswith("malformed"))
    assert valid > 100 and malformed > 0, stats.keys()

    mirrored = id_log.read_text().split()
    assert len(mirrored) == valid  # no challengers: the champion answered every valid request
    records = asyncio.run(read_topic(kafka_broker.bootstrap, topic, expect=len(mirrored), timeout_s=30))
    values = [orjson.loads(v) for _, _, v in records]
    assert len(values) == len(mirrored)
    assert sorted(r["request_id"] for r in values) == sorted(mirrored)
    assert {r["shadow"]["status"] for r in values} == {"ok"}
    assert {(r["shadow"]["model"], r["shadow"]["version"]) for r in values} == {("credit-risk", 2)}

    # Every mirrored row was compared once: the divergence histogram and the label agreement
    # counters count rows (Locust's /invocations `inputs` requests carry two).
    rows = sum(r["rows"] for r in values)
    assert rows > len(values)
    with proxy.client() as client:
        metrics = _samples(client.get("/metrics").text)
    assert metrics['shadowlane_divergence_abs_count{endpoint="credit",shadow="credit-v2"}'] == rows
    agree = sum(v for k, v in metrics.items()
                if k.startswith("shadowlane_label_agreement_total{") and 'shadow="credit-v2"' in k)
    assert agree == rows
    assert proxy.stop() == 0


def _samples(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {"name{labels}": value} (labels as exposed)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out
