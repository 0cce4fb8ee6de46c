"""Read a bounded slice of a Kafka topic (by offsets or by time) as a plain iterator of values.

The gates are a batch job: the slice is fixed when reading starts (the end offsets of that moment,
or the first offsets at/after `end_ts`), so a gate run over a live topic still terminates and is
reproducible from the offsets it reports.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit


def parse_kafka_uri(uri: str) -> dict[str, Any]:
    """`kafka://host:port[,host:port]/topic?start_ts=..&end_ts=..&start_offset=..&end_offset=..`.

    Times are unix seconds; offsets apply to every partition.
    """
    parts = urlsplit(uri)
    if parts.scheme != "kafka" or not parts.netloc or not parts.path.strip("/"):
        raise ValueError(f"{uri!r} is not kafka://host:port/topic[?start_ts=&end_ts=&start_offset=&end_offset=]")
    q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    known = {"start_ts", "end_ts", "start_offset", "end_offset"}
    unknown = set(q) - known
    if unknown:
        raise ValueError(f"{uri!r}: unknown parameter(s) {sorted(unknown)}; known: {sorted(known)}")
    return {
        "bootstrap_servers": parts.netloc,
        "topic": parts.path.strip("/"),
        "start_ts": float(q["start_ts"]) if "start_ts" in q else None,
        "end_ts": float(q["end_ts"]) if "end_ts" in q else None,
        "start_offset": int(q["start_offset"]) if "start_offset" in q else None,
        "end_offset": int(q["end_offset"]) if "end_offset" in q else None,
    }


def read_topic(bootstrap_servers: str, topic: str, *, start_ts: float | None = None,
               end_ts: float | None = None, start_offset: int | None = None,
               end_offset: int | None = None, poll_ms: int = 500, stall_s: float = 60.0) -> Iterator[bytes]:
    """Values of `topic` from the start bound up to the end bound, partition by partition order.

    Without an end bound the slice ends at the end offsets seen when reading starts. A partition is
    done when the consumer's position reaches its end (offsets taken by transaction markers or
    compaction have no message); no progress for `stall_s` raises TimeoutError.
    """
    loop = asyncio.new_event_loop()
    try:
        consumer, bounds = loop.run_until_complete(
            _open(bootstrap_servers, topic, start_ts, end_ts, start_offset, end_offset))
        try:
            remaining = {tp: end for tp, (start, end) in bounds.items() if end > start}
            last_progress = time.monotonic()
            while remaining:
                batches = loop.run_until_complete(consumer.getmany(*remaining, timeout_ms=poll_ms))
                for tp, messages in batches.items():
                    end = remaining.get(tp)
                    if end is None:
                        continue
                    for m in messages:
                        if m.offset >= end:
                            break
                        if m.value is not None:
                            yield m.value
                if batches:
                    last_progress = time.monotonic()
                for tp in list(remaining):
                    if loop.run_until_complete(consumer.position(tp)) >= remaining[tp]:
                        del remaining[tp]
                if remaining and time.monotonic() - last_progress > stall_s:
                    left = {f"{tp.topic}[{tp.partition}]": end for tp, end in remaining.items()}
                    raise TimeoutError(f"kafka topic {topic!r} on {bootstrap_servers}: no progress for "
                                       f"{stall_s:g} s before end offsets {left}")
        finally:
            loop.run_until_complete(consumer.stop())
    finally:
        loop.close()


async def _open(bootstrap: str, topic: str, start_ts: float | None, end_ts: float | None,
                start_offset: int | None, end_offset: int | None) -> tuple[Any, dict[Any, tuple[int, int]]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        # A fresh consumer only knows topics it subscribed to; ask the cluster for all of them.
        cluster = await consumer._client.fetch_all_metadata()
        parts = cluster.partitions_for_topic(topic)
        if not parts:
            raise ValueError(f"kafka topic {topic!r} not found on {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        first = await consumer.beginning_offsets(tps)
        last = await consumer.end_offsets(tps)
        starts = {tp: first[tp] for tp in tps}
        ends = {tp: last[tp] for tp in tps}
        if start_offset is not None:
            starts = {tp: max(first[tp], start_offset) for tp in tps}
        if end_offset is not None:
            ends = {tp: min(last[tp], end_offset) for tp in tps}
        if start_ts is not None:
            found = await consumer.offsets_for_times({tp: int(start_ts * 1000) for tp in tps})
            starts = {tp: (found[tp].offset if found[tp] else last[tp]) for tp in tps}
        if end_ts is not None:
            found = await consumer.offsets_for_times({tp: int(end_ts * 1000) for tp in tps})
            ends = {tp: (found[tp].offset if found[tp] else last[tp]) for tp in tps}
        for tp in tps:
            consumer.seek(tp, starts[tp])
        return consumer, {tp: (starts[tp], ends[tp]) for tp in tps}
    except BaseException:
        await consumer.stop()
        raise
