"""KafkaSink while its broker fails for real: stopped and restarted, frozen (SIGSTOP: the broker
holds connections but never answers — aiokafka's hang case, #1101), and past the spill bound.
These use `kafka_outage_broker`, never the shared broker."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import defaultdict

import orjson
import pytest

from proxy.sinks.kafka import KafkaSink
from tests.fixtures.kafka import KafkaBroker, create_topic, read_topic
from tests.test_kafka_sink import record, sink_for, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

UNITS = [f"user-{u}" for u in range(11)]


def emit(sink: KafkaSink, i: int) -> None:
    unit = UNITS[i % len(UNITS)]
    sink.emit(record(i, unit), unit.encode())


async def emitter(sink: KafkaSink, start: int, stop: asyncio.Event, per_tick: int = 5) -> int:
    """Emit steadily (like a serving proxy) until `stop`; returns the next sequence number."""
    i = start
    while not stop.is_set():
        for _ in range(per_tick):
            emit(sink, i)  # never raises, never blocks: a raise here fails the test
            i += 1
        await asyncio.sleep(0.005)
    return i


def drained(sink: KafkaSink) -> bool:
    s = sink.stats
    return not sink.spilling and sink.depth() == 0 and s.written - s.replayed + s.spilled + s.dropped == s.emitted


def first_occurrences(msgs: list[tuple[int, bytes | None, bytes]]) -> dict[bytes, list[int]]:
    """Per key, the sequence numbers in topic order, duplicates (at-least-once) removed."""
    seen: set[int] = set()
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for _, key, value in msgs:
        seq = orjson.loads(value)["seq"]
        if seq not in seen:
            seen.add(seq)
            by_key[key].append(seq)
    return by_key


async def test_broker_stopped_mid_run_and_restarted_loses_nothing(kafka_outage_broker: KafkaBroker,
                                                                 kafka_topic, tmp_path):
    broker = kafka_outage_broker
    broker.ensure_running()
    topic = kafka_topic("outage")
    await create_topic(broker.bootstrap, topic, partitions=2)
    sink = sink_for(broker.bootstrap, topic, tmp_path, request_timeout_ms=1500)
    await sink.start()
    stop = asyncio.Event()
    task = asyncio.create_task(emitter(sink, 0, stop))
    await wait_until(lambda: sink.stats.written >= 300)
    await asyncio.to_thread(broker.stop)  # records keep coming while it goes down
    await wait_until(lambda: sink.stats.spilled >= 300)
    assert sink.spilling and sink.stats.lag_s > 0
    await asyncio.to_thread(broker.start)
    await wait_until(lambda: sink.stats.replayed >= 300)
    stop.set()
    n = await task
    await wait_until(lambda: drained(sink))
    await sink.stop()

    s = sink.stats
    assert s.emitted == n and s.dropped == 0 and s.replayed == s.spilled > 0
    assert s.producer_starts >= 2, "the producer of the dead broker was replaced"
    msgs = await read_topic(broker.bootstrap, topic, expect=n)
    by_key = first_occurrences(msgs)
    assert sorted(q for seqs in by_key.values() for q in seqs) == list(range(n)), "0 lost"
    for key, seqs in by_key.items():
        assert seqs == sorted(seqs), f"order of {key!r} kept across the outage"


async def test_past_the_spill_bound_the_drop_count_equals_the_shortfall(kafka_outage_broker: KafkaBroker,
                                                                        kafka_topic, tmp_path):
    broker = kafka_outage_broker
    broker.ensure_running()
    topic = kafka_topic("bound")
    # 3 s: phase one must not time out on a loaded machine (a spill then could already drop).
    sink = sink_for(broker.bootstrap, topic, tmp_path, request_timeout_ms=3000, spill_max_bytes=4096)
    await sink.start()
    for i in range(100):
        emit(sink, i)
    await wait_until(lambda: sink.stats.written == 100)
    await asyncio.to_thread(broker.stop)
    for i in range(100, 400):  # ~110 bytes a spill line: only some fit in 4 KiB
        emit(sink, i)
        if i % 20 == 0:
            await asyncio.sleep(0.01)
    await wait_until(lambda: sink.stats.spilled + sink.stats.dropped == 300)
    assert 0 < sink.stats.spilled < 300 and sink.stats.spill_bytes <= 4096
    await asyncio.to_thread(broker.start)
    await wait_until(lambda: drained(sink))
    await sink.stop()

    dropped = sink.stats.dropped
    msgs = await read_topic(broker.bootstrap, topic, expect=400 - dropped)
    present = {orjson.loads(v)["seq"] for _, _, v in msgs}
    missing = set(range(400)) - present
    assert len(missing) == dropped > 0, "every record lost is counted, and only those"
    assert min(missing) >= 100, "only records emitted while the broker was down can be lost"
    assert sink.stats.replayed == sink.stats.spilled


async def test_frozen_broker_never_hangs_the_sink(kafka_outage_broker: KafkaBroker, kafka_topic, tmp_path):
    """SIGSTOP: connections stay open, nothing answers, so aiokafka's futures never resolve (with
    idempotence, batches never expire). Every call is bounded: records spill, `stop()` returns,
    and after SIGCONT a new sink on the same spill replays everything."""
    broker = kafka_outage_broker
    broker.ensure_running()
    topic = kafka_topic("frozen")
    sink = sink_for(broker.bootstrap, topic, tmp_path, request_timeout_ms=1000)
    await sink.start()
    emit(sink, 0)
    await wait_until(lambda: sink.stats.written == 1)
    pid = int((broker.directory / "kafka.pid").read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        for i in range(1, 201):
            emit(sink, i)
        await wait_until(lambda: sink.stats.spilled == 200)
        assert sink.stats.send_failures >= 1
        await asyncio.wait_for(sink.stop(timeout_s=1), 15)  # a hang fails here
    finally:
        os.kill(pid, signal.SIGCONT)
    assert sink.stats.written == 1 and sink.stats.dropped == 0

    again = sink_for(broker.bootstrap, topic, tmp_path)
    await again.start()
    await wait_until(lambda: drained(again) and again.stats.replayed == 200, timeout_s=60)
    await again.stop()
    msgs = await read_topic(broker.bootstrap, topic, expect=201)
    by_key = first_occurrences(msgs)
    assert sorted(q for seqs in by_key.values() for q in seqs) == list(range(201))
    for seqs in by_key.values():
        assert seqs == sorted(seqs)


def sink_metrics(proxy) -> dict[str, float]:
    """The proxy's own /metrics view of its sink: record outcomes, spill bytes, buffer depth."""
    from prometheus_client.parser import text_string_to_metric_families

    with proxy.client() as c:
        text = c.get("/metrics").text
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "shadowlane_sink_records_total":
                out[s.labels["outcome"]] = s.value
            elif s.name in ("shadowlane_sink_spill_bytes", "shadowlane_sink_buffer_records"):
                out[s.name] = s.value
    return out


async def test_proxy_keeps_answering_through_a_broker_outage_and_loses_no_record(
        kafka_outage_broker: KafkaBroker, kafka_topic, onnx_models, proxy_server, tmp_path):
    import threading

    import numpy as np

    from shadowlane.demo_models import synth_applicants
    from tests.fixtures.proxy import oip_body
    from tests.test_kafka_proxy import kafka_config

    broker = kafka_outage_broker
    broker.ensure_running()
    topic = kafka_topic("proxy-outage")
    await create_topic(broker.bootstrap, topic, partitions=2)
    proxy = proxy_server(kafka_config(onnx_models, tmp_path, broker.bootstrap, topic, request_timeout_ms=1500))
    rows = synth_applicants(8, np.random.default_rng(2))
    statuses: list[int] = []
    done = threading.Event()

    def requests() -> None:
        with proxy.client() as client:
            i = 0
            while not done.is_set():
                r = client.post("/v2/models/credit/infer", json=oip_body(rows[i % 8:i % 8 + 1]),
                                headers={"x-user-id": UNITS[i % len(UNITS)], "x-request-id": f"req-{i}"})
                statuses.append(r.status_code)
                i += 1

    sender = threading.Thread(target=requests)
    sender.start()
    try:
        await wait_until(lambda: len(statuses) >= 100)
        await asyncio.to_thread(broker.stop)
        mark = len(statuses)
        await wait_until(lambda: len(statuses) >= mark + 100)
        await asyncio.to_thread(broker.start)
        mark = len(statuses)
        await wait_until(lambda: len(statuses) >= mark + 100)
    finally:
        done.set()
        await asyncio.to_thread(sender.join)
    n = len(statuses)
    assert statuses == [200] * n, "the champion answered every request"

    def caught_up() -> bool:
        m = sink_metrics(proxy)
        return (m.get("shadowlane_sink_spill_bytes") == 0 and m.get("shadowlane_sink_buffer_records") == 0
                and m.get("emitted") == n)
    await wait_until(caught_up, timeout_s=60)
    m = sink_metrics(proxy)
    assert m["spilled"] > 0 and m["replayed"] == m["spilled"] and m["dropped"] == 0
    assert proxy.stop() == 0

    msgs = await read_topic(broker.bootstrap, topic, expect=n)
    ids = {orjson.loads(v)["request_id"] for _, _, v in msgs}
    assert ids == {f"req-{i}" for i in range(n)}, "0 lost"
