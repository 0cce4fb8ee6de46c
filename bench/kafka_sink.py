"""How many shadow records per second one process can hand to Kafka through `KafkaSink`.

Starts a local broker with scripts/kafka.sh (unless --bootstrap is given), then for each
compression emits N realistic shadow records (one real record shape, distinct request ids,
1,000 unit ids) as fast as the sink's buffer takes them and times emit-to-acknowledged for all.
Only the loop is timed: broker start, topic creation and producer warm-up are not.

    .venv/bin/python -m bench.kafka_sink [--records 200000] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from proxy.sinks.kafka import KafkaSink
from shadowlane.record import encode

ROOT = Path(__file__).resolve().parents[1]


def sample_records(n: int) -> list[tuple[bytes, bytes]]:
    """N encoded records shaped like the demo's credit shadow records (10 features, 2 outputs)."""
    rng = np.random.default_rng(0)
    feats = rng.random((n, 10), dtype=np.float32)
    out = []
    for i in range(n):
        unit = f"user-{i % 1000}"
        p = float(feats[i, 0])
        side = {"model": "credit-risk", "version": 1, "variant": "champion", "status": "ok", "latency_ms": 0.21,
                "outputs": {"label": [int(p > 0.5)], "probabilities": [[1 - p, p]]}, "error": None}
        rec = {"v": 1, "ts": 1.7e9 + i, "request_id": f"bench-{i:09d}", "unit_id": unit, "endpoint": "credit",
               "protocol": "oip", "rows": 1, "champion": side,
               "shadow": {**side, "version": 2, "variant": "credit-v2", "batch_rows": 8},
               "features_hash": f"xxh3:{i:016x}", "features": {f"f{j}": [float(feats[i, j])] for j in range(10)},
               "attributes": {}}
        out.append((encode(rec), unit.encode()))  # type: ignore[arg-type]
    return out


async def run_one(bootstrap: str, records: list[tuple[bytes, bytes]], compression: str, spill: Path) -> dict:
    topic = f"bench-{compression}-{time.monotonic_ns()}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    await admin.close()
    sink = KafkaSink(bootstrap, topic=topic, compression=compression, linger_ms=5,
                     spill_directory=spill / compression, max_buffered_records=100_000)
    await sink.start()
    warm = 1000
    for rec, key in records[:warm]:  # producer connected, metadata cached: not timed
        sink.emit(rec, key)
    deadline = time.monotonic() + 60
    while sink.stats.written < warm:
        if sink.spilling or time.monotonic() > deadline:  # the broker is not taking records
            await sink.stop(timeout_s=1)
            raise SystemExit(f"kafka at {bootstrap} did not acknowledge {warm} warm-up records: {sink.stats}")
        await asyncio.sleep(0.01)

    n = len(records) - warm
    t0 = time.perf_counter()
    i = warm
    while i < len(records):
        room = 50_000 - sink.depth()  # feed as fast as the buffer takes it, never past it
        for rec, key in records[i:i + max(0, min(room, 5000))]:
            sink.emit(rec, key)
        i += max(0, min(room, 5000))
        await asyncio.sleep(0)
    while sink.stats.written < len(records) and sink.stats.dropped == 0 and not sink.spilling:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - t0
    await sink.stop()
    s = sink.stats
    size = sum(len(r) for r, _ in records[warm:])
    return {"compression": compression, "records": n, "seconds": round(elapsed, 3),
            "records_per_s": round(n / elapsed), "mb_per_s": round(size / elapsed / 1e6, 1),
            "avg_record_bytes": round(size / n), "dropped": s.dropped, "spilled": s.spilled}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--bootstrap", help="use this broker instead of starting one")
    args = ap.parse_args()
    records = sample_records(args.records + 1000)
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp:
        tmpdir = Path(tmp)
        bootstrap = args.bootstrap
        if bootstrap is None:
            import socket

            ports = []
            for _ in range(2):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    ports.append(s.getsockname()[1])
            subprocess.run([str(ROOT / "scripts/kafka.sh"), "up", "--dir", str(tmpdir / "broker"), "--port",
                            str(ports[0]), "--controller-port", str(ports[1])], check=True)
            bootstrap = f"127.0.0.1:{ports[0]}"
        try:
            results = [asyncio.run(run_one(bootstrap, records, c, tmpdir / "spill")) for c in ("none", "gzip")]
        finally:
            if args.bootstrap is None:
                subprocess.run([str(ROOT / "scripts/kafka.sh"), "down", "--dir", str(tmpdir / "broker")], check=False)
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
