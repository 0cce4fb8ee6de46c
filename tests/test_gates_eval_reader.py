"""Reading shadow logs into columns: batches, tensor features, bad lines, open segments, Kafka slices."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest

from gates.labels import attach_labels, read_labels
from gates.reader import ReadError, ReadOptions, read_shadow_log
from shadowlane.segments import SegmentWriter


def rec(rid: str, rows: int, *, ts: float = 1000.0, shadow=("cand", 2), status="ok", features=None, seg="a") -> dict:
    def side(model, version, offset):
        p = [round(0.1 * r + offset, 3) for r in range(rows)]
        return {"model": model, "version": version, "variant": "x", "status": "ok", "latency_ms": 1.0,
                "outputs": {"label": [int(v > 0.5) for v in p], "probabilities": [[1 - v, v] for v in p]}, "error": None}
    s = side(*shadow, 0.05)
    if status != "ok":
        s.update(status=status, outputs=None, error=status)
    return {"v": 1, "ts": ts, "request_id": rid, "unit_id": None, "endpoint": "e", "protocol": "oip", "rows": rows,
            "champion": side("champ", 1, 0.0), "shadow": s, "features_hash": "xxh3:0000000000000000",
            "features": features, "attributes": {"segment": seg}}


def write(path, records, **kw):
    w = SegmentWriter(path, **kw)
    w.write_many(orjson.dumps(r) for r in records)
    w.close()
    return path


def test_batched_requests_join_labels_per_row(tmp_path):
    log = write(tmp_path / "log", [rec("r1", 3), rec("r2", 2, shadow=("other", 1)), rec("r3", 1, status="timeout")])
    frame = read_shadow_log(log, ("cand", 2))
    assert frame.records.kind.tolist() == [0, 2, 0]
    assert frame.rows.row.tolist() == [0, 1, 2, 0]  # the other shadow's rows are not kept
    np.testing.assert_allclose(frame.rows.shadow_score[:3], [0.05, 0.15, 0.25])
    assert np.isnan(frame.rows.shadow_score[3]) and frame.rows.shadow_label[3] == -1
    labels = tmp_path / "labels.jsonl"
    labels.write_bytes(b"\n".join(orjson.dumps(x) for x in [
        {"request_id": "r1", "row": 2, "label": 1, "ts": 5}, {"request_id": "r1", "label": 0},
        {"request_id": "r1", "row": 2, "label": 0, "ts": 9},  # a later correction wins
        {"request_id": "unknown", "label": 1}]) + b"\n")
    attach_labels(frame, read_labels(labels))
    assert frame.rows.label.tolist() == [0, -1, 0, -1]


def test_tensor_features_become_named_columns(tmp_path):
    feats = {"x": [[1.0, 2.0, 3], [4.0, 5.0, 6]], "country": ["de", "fr"]}
    log = write(tmp_path / "log", [rec("r1", 2, features=feats)])
    default = read_shadow_log(log, ("cand", 2)).features
    assert sorted(default.columns) == ["x[0]", "x[1]", "x[2]"]
    assert default.names_seen == {"x[0]", "x[1]", "x[2]", "country"}
    assert default.json_types["country"] == {"str"} and default.json_types["x[2]"] == {"int"}
    assert default.tensor_shapes == {"x": {(3,)}}
    named = read_shadow_log(log, ("cand", 2), options=ReadOptions(input_columns={"x": ["a", "b", "c"]})).features
    assert named.columns["c"].tolist() == [3.0, 6.0]


def test_feature_sample_is_bounded(tmp_path):
    records = [rec(f"r{i}", 1, features={"f": [float(i)]}) for i in range(5000)]
    log = write(tmp_path / "log", records)
    sample = read_shadow_log(log, ("cand", 2), options=ReadOptions(max_feature_rows=1000)).features
    assert 0 < sample.n_rows <= 1000
    assert sample.sample_share < 1 and sample.records_with_features == 5000
    # a hash sample, not the first rows
    assert sample.columns["f"].max() > 4000


def test_bad_lines_and_open_segments(tmp_path):
    log = tmp_path / "log"
    write(log, [rec(f"r{i}", 1) for i in range(10)])
    with open(log / "shadow-00000009.jsonl.open", "wb") as f:  # a crash mid-write: last line torn
        f.write(orjson.dumps(rec("open1", 1)) + b"\n" + orjson.dumps(rec("open2", 1))[:40])
    assert len(read_shadow_log(log, ("cand", 2)).records) == 10
    assert len(read_shadow_log(log, ("cand", 2), include_open=True).records) == 11
    with open(log / "shadow-00000010.jsonl", "wb") as f:
        f.write(b'{"v": 2}\nnot json\n')
    with pytest.raises(ReadError, match="2 of 12 lines are not usable shadow records; first: line 11"):
        read_shadow_log(log, ("cand", 2))
    assert read_shadow_log(log, ("cand", 2), max_bad_fraction=0.5).bad_lines == 2


def test_score_output_must_exist(tmp_path):
    log = write(tmp_path / "log", [rec("r1", 1)])
    with pytest.raises(ReadError, match="no output 'score'"):
        read_shadow_log(log, ("cand", 2), options=ReadOptions(score_output="score"))
    frame = read_shadow_log(log, ("cand", 2), options=ReadOptions(label_output=None, decision_threshold=0.01))
    assert frame.rows.shadow_label.tolist() == [1]


@pytest.mark.kafka
def test_kafka_topic_slices_by_offset_and_time(kafka_broker, kafka_topic):
    from aiokafka import AIOKafkaProducer

    from tests.fixtures.kafka import create_topic

    topic, labels_topic = kafka_topic("gates"), kafka_topic("labels")
    base = 1_700_000_000.0

    async def produce() -> None:
        await create_topic(kafka_broker.bootstrap, topic, partitions=2)
        await create_topic(kafka_broker.bootstrap, labels_topic)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
        await producer.start()
        try:
            for i in range(40):
                r = rec(f"r{i}", 1, ts=base + i)
                await producer.send_and_wait(topic, orjson.dumps(r), partition=i % 2,
                                             timestamp_ms=int((base + i) * 1000))
            # a duplicate delivery of r0 (at-least-once)
            await producer.send_and_wait(topic, orjson.dumps(rec("r0", 1, ts=base)), partition=1,
                                         timestamp_ms=int((base + 40) * 1000))
            for i in range(0, 40, 2):  # outcomes of the even requests so far
                await producer.send_and_wait(labels_topic, orjson.dumps({"request_id": f"r{i}", "label": i % 4 // 2}))
        finally:
            await producer.stop()

    asyncio.run(produce())
    uri = f"kafka://{kafka_broker.bootstrap}/{topic}"
    whole = read_shadow_log(uri, ("cand", 2))
    assert whole.lines_read == 41 and len(whole.records) == 40 and whole.duplicates == 1
    by_offset = read_shadow_log(f"{uri}?end_offset=5", ("cand", 2))
    assert len(by_offset.records) == 10  # offsets 0..4 of both partitions
    by_time = read_shadow_log(f"{uri}?start_ts={base + 10}&end_ts={base + 20}", ("cand", 2))
    assert sorted(by_time.records.ts - base) == list(range(10, 20))
    attach_labels(whole, read_labels(f"kafka://{kafka_broker.bootstrap}/{labels_topic}"))
    by_request = dict(zip(whole.records.ts - base, whole.rows.label))
    assert by_request == {float(i): (i % 4 // 2 if i % 2 == 0 else -1) for i in range(40)}


def test_features_missing_from_some_records_line_up_by_row(tmp_path):
    log = write(tmp_path / "log", [
        rec("a", 2, features={"f": [1.0, 2.0], "g": [5, 6]}), rec("b", 3, features={"f": [3.0, 4.0, 5.0]}),
        rec("c", 1, features={"g": [7]}), rec("d", 2, features={"x": [[1, 2], [3, 4]]}),
        rec("e", 1, features={"x": [[5, 6]], "g": [8]})])
    cols = read_shadow_log(log, ("cand", 2)).features.columns
    nan = float("nan")
    np.testing.assert_array_equal(cols["f"], [1, 2, 3, 4, 5, nan, nan, nan, nan])
    np.testing.assert_array_equal(cols["g"], [5, 6, nan, nan, nan, 7, nan, nan, 8])
    np.testing.assert_array_equal(cols["x[1]"], [nan] * 6 + [2, 4, 6])
