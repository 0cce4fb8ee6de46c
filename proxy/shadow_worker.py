"""`shadowlane shadow-worker`: decoupled shadow mode's consumer.

In decoupled mode the proxy runs no shadow model: it publishes one request record per mirrored
request (`shadowlane.record.RequestRecord`: the champion's inputs and answer, the sampled
shadows) to `sink.requests_topic`, keyed by unit id. Workers form one Kafka consumer group on
that topic — scale out up to its partition count — run the listed shadow models and write one
shadow record per (request, shadow) to `sink.topic`, identical to what in-process mode writes.

Delivery is at-least-once: offsets are committed only after the broker acknowledged every
shadow record of a poll, so a crash or a rebalance re-runs some requests. Readers de-duplicate
by (request id, shadow model, version): `gates.reader` does so, `shadowlane.record.dedup` for
anyone else.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError

from proxy.backends import Backend, BackendError, build_backend
from proxy.config import ConfigError, DeploymentConfig, KafkaSinkConfig, load_config
from proxy.sinks.kafka import use_fast_gzip
from proxy.tensors import OIP_TO_NUMPY, oip_datatype
from shadowlane.record import RequestRecord, Tensor, decode_request, encode, request_json_schema

log = logging.getLogger("shadowlane.shadow_worker")

DEFAULT_GROUP = "shadowlane-shadow-worker"
_REQUIRED = frozenset(request_json_schema()["required"])  # fields `_shadow_record` reads


def tensor(arr: np.ndarray) -> Tensor:
    """A model input as a request record carries it (the proxy side of decoupled mode)."""
    flat = arr.reshape(-1)
    data = flat.tolist() if flat.dtype == object or flat.dtype.kind in "US" else flat
    return {"datatype": oip_datatype(arr), "shape": list(arr.shape), "data": data}  # type: ignore[typeddict-item]


def from_tensor(t: Tensor) -> np.ndarray:
    """The exact array `tensor()` encoded (dtype and shape included)."""
    dtype = OIP_TO_NUMPY.get(t["datatype"])
    if dtype is None:
        raise ValueError(f"unknown datatype {t['datatype']!r}")
    return np.asarray(t["data"], dtype=dtype).reshape(t["shape"])


class ShadowWorker:
    """One consumer-group member: requests topic in, shadow records out."""

    def __init__(self, cfg: DeploymentConfig, *, group_id: str = DEFAULT_GROUP,
                 poll_max_records: int = 500, retry_backoff_s: float = 1.0):
        if not isinstance(cfg.sink, KafkaSinkConfig):
            raise ConfigError(f"sink.type: shadow-worker needs a kafka sink (got {cfg.sink.type!r})")
        self.cfg = cfg
        self.sink: KafkaSinkConfig = cfg.sink
        self.group_id = group_id
        self._poll_max = poll_max_records
        self._backoff_s = retry_backoff_s
        self._timeouts: dict[tuple[str, str], float] = {
            (ep_name, s.model): s.timeout_ms / 1000
            for ep_name, ep in cfg.endpoints.items() for s in ep.shadows}
        self.backends: dict[str, Backend] = {}
        self._stop = asyncio.Event()
        self.processed = 0  # request records handled (including redeliveries)
        self.written = 0  # shadow records acknowledged by the broker
        self.skipped = 0  # request records that could not be used (bad JSON, unknown shadow)

    async def start_models(self) -> None:
        for key in sorted({m for (_, m) in self._timeouts}):
            backend = build_backend(self.cfg.models[key])
            await backend.start()
            self.backends[key] = backend

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Consume until `stop()`; a failed session (broker gone, commit refused) is rebuilt."""
        try:
            await self.start_models()  # inside: models started before one that fails get closed
            while not self._stop.is_set():
                try:
                    await self._session()
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    log.warning("shadow-worker session failed (%s: %s); retrying in %.1fs",
                                type(err).__name__, err, self._backoff_s)
                    try:
                        await asyncio.wait_for(self._stop.wait(), self._backoff_s)
                    except asyncio.TimeoutError:
                        pass
        finally:
            for backend in self.backends.values():
                await backend.close()

    async def _session(self) -> None:
        timeout_s = self.sink.request_timeout_ms / 1000
        consumer = AIOKafkaConsumer(
            self.sink.requests_topic, bootstrap_servers=self.sink.bootstrap_servers,
            group_id=self.group_id, enable_auto_commit=False, auto_offset_reset="earliest",
            heartbeat_interval_ms=1000, session_timeout_ms=10_000)
        if self.sink.compression == "gzip":
            use_fast_gzip()
        producer = AIOKafkaProducer(
            bootstrap_servers=self.sink.bootstrap_servers, enable_idempotence=True,
            linger_ms=self.sink.linger_ms, max_batch_size=self.sink.max_batch_bytes,
            compression_type=None if self.sink.compression == "none" else self.sink.compression,
            request_timeout_ms=self.sink.request_timeout_ms)
        try:
            # Bounded: a producer whose start failed is never reused (aiokafka#759).
            await asyncio.wait_for(consumer.start(), timeout_s)
            await asyncio.wait_for(producer.start(), timeout_s)
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=self._poll_max)
                if not batches:
                    continue
                futures = []
                for msgs in batches.values():
                    for msg in msgs:
                        for value, key in await self._handle(msg.value):
                            futures.append(await asyncio.wait_for(
                                producer.send(self.sink.topic, value, key=key), timeout_s))
                if futures:
                    await asyncio.wait_for(asyncio.gather(*futures), timeout_s)
                self.written += len(futures)
                # Only now: what is committed has its shadow records on the broker.
                try:
                    await asyncio.wait_for(consumer.commit(
                        {TopicPartition(tp.topic, tp.partition): msgs[-1].offset + 1
                         for tp, msgs in batches.items() if msgs}), timeout_s)
                except CommitFailedError as err:
                    # A rebalance moved the partitions on: their new owner re-runs these
                    # requests (duplicates, removed downstream). Keep consuming.
                    log.info("commit refused after a rebalance: %s", err)
        finally:
            for client in (consumer, producer):
                try:
                    await asyncio.wait_for(client.stop(), timeout_s)
                except Exception as err:
                    log.debug("closing %s: %r", type(client).__name__, err)

    async def _handle(self, value: bytes | None) -> list[tuple[bytes, bytes | None]]:
        """The encoded shadow records (and keys) for one request record."""
        # Everything a record can get wrong is caught here: a record that raised later would
        # fail the session before its commit and come back for ever (a poison message).
        try:
            req = decode_request(value or b"")
            missing = _REQUIRED - req.keys()
            if missing:
                raise KeyError(f"missing fields {sorted(missing)}")
            feeds = {name: from_tensor(t) for name, t in req["inputs"].items()}
            key = req["unit_id"].encode() if req["unit_id"] is not None else None
            shadows = [str(s) for s in req["shadows"]]
            if not isinstance(req["endpoint"], str):
                raise TypeError(f"endpoint must be a string, not {type(req['endpoint']).__name__}")
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            self.skipped += 1
            log.error("request record skipped: %s", err)
            return []
        self.processed += 1
        out = []
        for model_key in shadows:
            timeout_s = self._timeouts.get((req["endpoint"], model_key))
            if timeout_s is None:
                self.skipped += 1
                log.error("request %s: shadow %r of endpoint %r is not in this worker's config",
                          req["request_id"], model_key, req["endpoint"])
                continue
            out.append((self._shadow_record(req, model_key, feeds, await self._predict(model_key, feeds, timeout_s)), key))
        return out

    async def _predict(self, model_key: str, feeds: dict[str, np.ndarray],
                       timeout_s: float) -> tuple[dict[str, np.ndarray] | tuple[str, str], float]:
        backend = self.backends[model_key]
        t0 = time.perf_counter()
        try:
            call = asyncio.to_thread(backend.predict, feeds) if backend.sync else backend.infer(feeds)
            out: Any = await asyncio.wait_for(call, timeout_s)
        except asyncio.TimeoutError:
            out = ("timeout", f"no answer within {timeout_s * 1000:g} ms")
        except BackendError as err:
            out = ("error", str(err))
        except Exception as err:  # a model failure is a recorded result
            out = ("error", f"{type(err).__name__}: {err}")
        return out, time.perf_counter() - t0

    def _shadow_record(self, req: RequestRecord, model_key: str, feeds: dict[str, np.ndarray],
                       result: tuple[Any, float]) -> bytes:
        outcome, latency_s = result
        model = self.cfg.models[model_key]
        if isinstance(outcome, dict):
            status, error, outputs = "ok", None, outcome
        else:
            (status, error), outputs = outcome, None
        record = {
            "v": req["v"], "ts": req["ts"], "request_id": req["request_id"], "unit_id": req["unit_id"],
            "endpoint": req["endpoint"], "protocol": req["protocol"], "rows": req["rows"],
            "champion": req["champion"],
            "shadow": {"model": model.name, "version": model.version, "variant": model_key,
                       "status": status, "latency_ms": latency_s * 1000, "outputs": outputs,
                       "error": error, "batch_rows": req["rows"]},
            "features_hash": req["features_hash"], "features": req["features"],
            "attributes": req["attributes"],
        }
        try:
            return encode(record)  # type: ignore[arg-type]
        except TypeError as err:  # an output orjson cannot serialise: keep the pair, say why
            record["shadow"].update(outputs=None, status="error", error=f"unserialisable output: {err}")  # type: ignore[attr-defined]
            return encode(record)  # type: ignore[arg-type]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="shadowlane shadow-worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="deployment config (its sink must be kafka)")
    parser.add_argument("--group", default=DEFAULT_GROUP, help=f"consumer group id (default {DEFAULT_GROUP})")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config)
        worker = ShadowWorker(cfg, group_id=args.group)
    except ConfigError as err:
        print(f"shadowlane shadow-worker: {err}", file=sys.stderr)
        return 2

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    asyncio.run(run())
    # One line tests and operators can read: how much this member did.
    print(f"shadow-worker {args.group}: processed={worker.processed} written={worker.written} "
          f"skipped={worker.skipped}", file=sys.stderr)
    return 0
