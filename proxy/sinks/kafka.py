"""The production sink: shadow records to Kafka, with a local spill while the broker is away.

Front door: `emit()` / `emit_request()` append to a bounded in-memory buffer (full: dropped and
counted) and return. Everything else runs on the sink's own thread with its own event loop, so
batch building, murmur2 and gzip (level 1 via `use_fast_gzip`, ~1 ms per 128 KiB batch)
never run on the proxy's loop; zlib releases the GIL while it works. That thread's task:

* **direct**: every `linger_ms` it takes the buffer (a round, at most 10,000 records), builds
  one record batch per partition
  (keyed by unit id, murmur2 like the Java client, `max_batch_bytes`, gzip or none), hands the
  batches to the producer and awaits their acknowledgement, bounded by `request_timeout_ms`.
  One round in flight at a time keeps per-key order without relying on producer retries.
* **spilling**: a failed or timed-out round, and every record after it, goes to local segment
  files (`proxy.sinks.spill`, at most `spill_max_bytes`; beyond that dropped and counted) in
  this sink's own subdirectory of `spill_directory` (worker processes share it safely). A
  fresh producer is tried every `reconnect_backoff_ms`; once one starts, the spill is replayed
  in order, segment by segment, while new records keep appending behind it; when the spill is
  empty the sink is direct again. Spills left by stopped or crashed sinks are adopted and
  replayed on start.

Broker calls are all bounded: aiokafka can hang while the broker is down — `send()` after a
failed `start()` never completes (aio-libs/aiokafka#759), and with idempotence batches never
expire so futures and `stop()` hang (#1101). So every await on the producer is under
`asyncio.wait_for`, a producer that failed once is discarded (never restarted), and a stuck
`stop()` is abandoned after cancelling its sender task.

Delivery is at-least-once: a round that timed out may have reached the broker before it is
spilled and replayed, so consumers de-duplicate by `request_id` (docs/kafka.md).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import UnknownTopicOrPartitionError
from aiokafka.partitioner import murmur2

from proxy.sinks.base import SinkStats
from proxy.sinks.spill import Item, Spill

if TYPE_CHECKING:
    from proxy.config import KafkaSinkConfig

log = logging.getLogger("shadowlane.sink.kafka")

_REPLAY_CHUNK = 5000  # spilled records per replay round; the buffer is drained in between
_MAX_ROUND = 10_000  # records per produce round: bounds the work one acknowledgement waits for
_PARTITION_CACHE_MAX = 100_000


def use_fast_gzip() -> bool:
    """Make aiokafka gzip its batches at level 1 instead of its fixed level 9 (process-wide).

    Level 9 runs at ~20 MB/s and caps one producer near 10k shadow records/s; level 1 runs at
    ~120 MB/s for a ratio of 5.1 instead of 5.9 on these records (measured; docs/kafka.md).
    aiokafka has no option for it, but its record builders (the C one too) look `gzip_encode` up
    as a module global at call time, so swapping that global is enough. Returns False (and
    leaves level 9) if a future aiokafka no longer has it there.
    """
    from aiokafka import codec

    original: Any = getattr(codec, "gzip_encode", None)
    if original is None:
        return False
    swapped = False
    for name in ("aiokafka.record.default_records", "aiokafka.record._crecords.default_records"):
        try:
            mod = importlib.import_module(name)
        except ImportError:  # no C extension in this build
            continue
        current = getattr(mod, "gzip_encode", None)
        if current is original:
            mod.gzip_encode = functools.partial(original, compresslevel=1)  # type: ignore[attr-defined, arg-type, misc]  # untyped private hook
            swapped = True
        elif isinstance(current, functools.partial) and current.func is original:
            swapped = True  # already done
    return swapped


@dataclass
class KafkaSinkStats(SinkStats):
    """`SinkStats` plus the Kafka-specific gauges; every field is a plain number for /metrics.

    `written` counts records the broker acknowledged (direct and replayed); `replayed` is the
    subset that came from the spill. Once drained: emitted == written - replayed + spilled + dropped.
    """

    spill_bytes: int = 0  # bytes currently held in spill segments
    lag_s: float = 0.0  # age of the oldest record not yet acknowledged (0 when caught up)
    producer_starts: int = 0  # producers started successfully (>1 means reconnects)
    send_failures: int = 0  # rounds that failed or timed out and went to the spill


class _RoundFailed(Exception):
    """A produce round did not complete; its records must be spilled."""


class KafkaSink:
    """Shadow records (and, in decoupled mode, request records) to Kafka; see the module doc.

    `emit()` and `emit_request()` may be called from one thread at a time (the proxy's loop).
    `stats` fields are plain numbers, updated by both threads (each field has one writer,
    except `dropped`, which is locked).
    """

    def __init__(self, bootstrap_servers: str, *, topic: str = "shadowlane.shadow-records",
                 requests_topic: str = "shadowlane.requests", linger_ms: int = 10,
                 max_batch_bytes: int = 131072, compression: str = "gzip",
                 request_timeout_ms: int = 5000, max_buffered_records: int = 100_000,
                 spill_directory: str | Path = "shadowlog-spill",
                 spill_max_bytes: int = 1024 * 1024 * 1024, reconnect_backoff_ms: int = 1000,
                 enable_idempotence: bool = True, max_record_bytes: int = 1_000_000,
                 client_id: str = "shadowlane-sink"):
        if compression not in ("gzip", "none"):
            raise ValueError(f"compression={compression!r} must be 'gzip' or 'none' "
                             "(the others need a native library)")
        if max_buffered_records < 1:
            raise ValueError(f"max_buffered_records={max_buffered_records!r} must be at least 1")
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.requests_topic = requests_topic
        self.stats = KafkaSinkStats()
        self._linger_s = max(linger_ms, 1) / 1000
        self._max_batch_bytes = max_batch_bytes
        self._compression = None if compression == "none" else compression
        if self._compression == "gzip" and not use_fast_gzip():
            log.info("aiokafka layout changed: gzip stays at level 9 (slower, see docs/kafka.md)")
        self._timeout_s = request_timeout_ms / 1000
        self._max_buffered = max_buffered_records
        # The broker rejects messages over message.max.bytes (default ~1 MiB) for good; such a
        # record would fail its round for ever, so it is refused at the door instead.
        self._max_record = max_record_bytes
        self._spill_root = Path(spill_directory)
        self._spill_max = spill_max_bytes
        # Small segments so replayed space is freed (and counted) early.
        self._spill = Spill(self._spill_root, max_bytes=spill_max_bytes,
                            segment_bytes=max(1024, min(16 * 1024 * 1024, spill_max_bytes // 8)))
        self._backoff_s = reconnect_backoff_ms / 1000
        self._idempotence = enable_idempotence
        self._client_id = client_id

        self._buf: deque[Item] = deque()
        self._buf_since: float | None = None  # when the buffer last went non-empty
        self._inflight: list[Item] = []  # the round being produced, spilled if it is cut short
        self._inflight_since: float | None = None
        self._spill_since: float | None = None
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, list[int]] = {}
        self._key_partition: dict[tuple[str, bytes], int] = {}
        self._next_connect = 0.0
        self._down = False  # an outage was logged
        self._drop_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None  # lives on the sink's loop
        self._stop_timeout_s = 5.0
        self._started = threading.Event()

    @classmethod
    def from_config(cls, cfg: "KafkaSinkConfig") -> "KafkaSink":
        return cls(cfg.bootstrap_servers, topic=cfg.topic, requests_topic=cfg.requests_topic,
                   linger_ms=cfg.linger_ms, max_batch_bytes=cfg.max_batch_bytes,
                   compression=cfg.compression, request_timeout_ms=cfg.request_timeout_ms,
                   max_buffered_records=cfg.max_buffered_records,
                   spill_directory=cfg.spill_directory, spill_max_bytes=cfg.spill_max_bytes)

    # -- front door (sync, never blocks, never raises) ---------------------------------------

    def emit(self, record: bytes, key: bytes | None) -> None:
        """Queue one encoded shadow record for `topic`, keyed by unit id."""
        self._put(self.topic, record, key)

    def emit_request(self, record: bytes, key: bytes | None) -> None:
        """Queue one encoded request record for `requests_topic` (decoupled mode)."""
        self._put(self.requests_topic, record, key)

    def _put(self, topic: str, record: bytes, key: bytes | None) -> None:
        self.stats.emitted += 1
        buf = self._buf
        if len(buf) >= self._max_buffered or len(record) > self._max_record:
            self._drop(1)
            return
        if not buf:
            self._buf_since = time.monotonic()
        buf.append((topic, key, record))

    def depth(self) -> int:
        return len(self._buf)

    @property
    def spilling(self) -> bool:
        """True while records go to (or are replayed from) the local spill."""
        return self._spill_pending()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the sink's thread. Never waits for the broker: a broker that is down at start
        is the same as one that goes down later (records spill)."""
        if self._thread is not None:
            return
        adopted = self._spill.open()
        self.stats.spill_bytes = self._spill.bytes
        if self._spill.bytes:
            self._spill_since = time.monotonic()
            log.info("replaying %d bytes of spill left by %d stopped sinks in %s",
                     self._spill.bytes, adopted, self._spill_root)
        self._started.clear()
        self._thread = threading.Thread(target=self._thread_main, name="shadowlane-kafka-sink", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._started.wait, 10)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Produce what is buffered within `timeout_s` (if the broker is there); whatever is
        left goes to the spill, replayed by the next start. Then close the producer, bounded.
        Idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop_timeout_s = timeout_s
        # start() waits 10 s at most for the thread: one still starting has no loop to signal yet.
        await asyncio.to_thread(self._started.wait, timeout_s + 5)
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # its loop already closed
                pass
        await asyncio.to_thread(thread.join, timeout_s + 5)
        if thread.is_alive():  # every broker call is bounded, so this is a bug: say so
            log.error("kafka sink thread did not stop within %.1fs; %d buffered records abandoned",
                      timeout_s + 5, len(self._buf))

    def _drop(self, n: int) -> None:
        with self._drop_lock:
            self.stats.dropped += n

    # -- the sink's thread -----------------------------------------------------------------

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        finally:
            # Abandoned producers may leave tasks behind; give them a moment, never wait on them.
            rest = asyncio.all_tasks(loop)
            for task in rest:
                task.cancel()
            if rest:
                loop.run_until_complete(asyncio.wait(rest, timeout=1.0))
            loop.close()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._started.set()
        task = asyncio.create_task(self._run(), name="shadowlane-kafka-sink")
        await self._stop_event.wait()
        deadline = time.monotonic() + self._stop_timeout_s
        while ((self._buf or self._inflight) and not self._spill_pending() and not self._down
               and not task.done() and time.monotonic() < deadline):
            await asyncio.sleep(self._linger_s)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("kafka sink task failed")
        # A round cut short by the cancel may or may not have reached the broker: keep it.
        self._spill_items(self._take_inflight())
        self._spill_items(self._take_buffer(None))
        self._spill.close()
        self.stats.spill_bytes = self._spill.bytes
        await self._discard_producer(max(0.1, deadline - time.monotonic()))
        self._update_lag()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._linger_s)
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not kill the sink: log, spill, carry on
                log.exception("kafka sink round failed unexpectedly")
                self._spill_items(self._take_inflight())
                self._spill_items(self._take_buffer(None))
                await self._discard_producer(self._timeout_s)
            self._update_lag()

    async def _step(self) -> None:
        if self._spill_pending():
            # Order: everything newer than the spill must go behind it.
            self._spill_items(self._take_buffer())
            if self._producer is None and not await self._connect():
                return
            try:
                await self._replay_chunk()
            except _RoundFailed:
                await self._discard_producer(self._timeout_s)
            return
        if not self._buf:
            return
        if self._producer is None and not await self._connect():
            self._spill_items(self._take_buffer())
            return
        try:
            await self._produce_round(self._take_buffer(), self._timeout_s)
        except _RoundFailed:
            await self._discard_producer(self._timeout_s)

    def _take_inflight(self) -> list[Item]:
        items, self._inflight = self._inflight, []
        return items

    def _take_buffer(self, limit: int | None = _MAX_ROUND) -> list[Item]:
        # popleft, not copy-and-clear: emit() may append from the other thread meanwhile.
        buf, since = self._buf, self._buf_since
        n = len(buf) if limit is None else min(len(buf), limit)
        items = [buf.popleft() for _ in range(n)]
        self._inflight_since = since
        # What a capped round leaves behind is no younger than what it took: keep its age, or
        # the lag would read 0 through exactly the backlog it is meant to show.
        self._buf_since = since if buf else None
        return items

    # -- producer --------------------------------------------------------------------------------

    async def _connect(self) -> bool:
        now = time.monotonic()
        if now < self._next_connect:
            return False
        self._next_connect = now + self._backoff_s
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers, client_id=self._client_id,
            enable_idempotence=self._idempotence, acks="all" if self._idempotence else 1,
            linger_ms=0,  # batches are built here, whole
            max_batch_size=self._max_batch_bytes,
            max_request_size=max(1024 * 1024, 2 * self._max_batch_bytes, 2 * self._max_record),
            compression_type=self._compression, request_timeout_ms=int(self._timeout_s * 1000),
            retry_backoff_ms=100)
        try:
            await asyncio.wait_for(producer.start(), self._timeout_s)
            for topic in (self.topic, self.requests_topic):
                self._partitions.pop(topic, None)
            self._key_partition.clear()
        except Exception as err:  # KafkaConnectionError, timeouts, ...: all mean "not now"
            # Once per outage at WARNING; every retry would flood the log.
            log.log(logging.DEBUG if self._down else logging.WARNING,
                    "kafka %s unavailable (%s: %s); spilling, retrying every %.1fs",
                    self.bootstrap_servers, type(err).__name__, err, self._backoff_s)
            self._down = True
            # Never reuse a producer whose start failed (aiokafka#759): discard it.
            await self._abandon(producer, self._timeout_s)
            return False
        self._producer = producer
        self.stats.producer_starts += 1
        if self._down:
            log.warning("kafka %s reachable again", self.bootstrap_servers)
        self._down = False
        return True

    async def _discard_producer(self, timeout_s: float) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._abandon(producer, timeout_s)

    @staticmethod
    async def _abandon(producer: AIOKafkaProducer, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(producer.stop(), timeout_s)
            return
        except Exception as err:
            log.debug("producer stop did not finish cleanly: %r", err)
        # stop() hangs while idempotent batches wait for a dead broker (aiokafka#1101): cancel
        # the sender task ourselves so nothing of this producer keeps running.
        sender = getattr(getattr(producer, "_sender", None), "sender_task", None)
        if sender is not None and not sender.done():
            sender.cancel()
        try:
            await asyncio.wait_for(producer.client.close(), 1.0)
        except Exception as err:
            log.debug("producer client close did not finish cleanly: %r", err)

    async def _partitions_for(self, topic: str, timeout_s: float) -> list[int]:
        parts = self._partitions.get(topic)
        if parts is None:
            assert self._producer is not None
            try:
                found = await asyncio.wait_for(self._producer.partitions_for(topic), timeout_s)
            except (asyncio.TimeoutError, UnknownTopicOrPartitionError):
                found = None
            if not found:  # the round fails and spills; the log says why, and an empty list is not cached
                raise LookupError(f"no partitions of topic {topic!r} within {timeout_s:.1f} s (does it exist?)")
            parts = self._partitions[topic] = sorted(found)
        return parts

    def _partition(self, topic: str, parts: list[int], key: bytes | None) -> int:
        if key is None:
            return parts[0] if len(parts) == 1 else parts[int(time.monotonic_ns() // 1000) % len(parts)]
        cache_key = (topic, key)
        p = self._key_partition.get(cache_key)
        if p is None:
            # Same choice as the Java client's default partitioner, so keys co-partition with
            # any other producer; murmur2 is pure Python here, hence the cache.
            p = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
            if len(self._key_partition) >= _PARTITION_CACHE_MAX:
                self._key_partition.clear()
            self._key_partition[cache_key] = p
        return p

    async def _send(self, items: list[Item], timeout_s: float) -> int:
        """Produce `items` and wait for every acknowledgement; returns how many were sent.
        Raises `_RoundFailed` when the broker did not acknowledge all in time."""
        producer = self._producer
        assert producer is not None
        deadline = time.monotonic() + timeout_s
        futures: list[asyncio.Future[Any]] = []
        open_batches: dict[tuple[str, int], Any] = {}
        sent = 0
        by_topic: dict[str, list[int]] = {}
        try:
            for topic, key, value in items:
                parts = by_topic.get(topic)
                if parts is None:
                    parts = by_topic[topic] = await self._partitions_for(
                        topic, max(0.01, deadline - time.monotonic()))
                p = self._partition(topic, parts, key)
                batch = open_batches.get((topic, p))
                if batch is None:
                    batch = open_batches[(topic, p)] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    # Full: ship it and start the next one for this partition. An empty batch
                    # always takes one record, however large (as in the Java client).
                    futures.append(await asyncio.wait_for(
                        producer.send_batch(batch, topic, partition=p),
                        max(0.01, deadline - time.monotonic())))
                    batch = open_batches[(topic, p)] = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
                sent += 1
            for (topic, p), batch in open_batches.items():
                futures.append(await asyncio.wait_for(
                    producer.send_batch(batch, topic, partition=p),
                    max(0.01, deadline - time.monotonic())))
            open_batches.clear()
            if futures:
                await asyncio.wait_for(asyncio.gather(*futures), max(0.01, deadline - time.monotonic()))
        except asyncio.CancelledError:
            raise
        except Exception as err:
            for fut in futures:
                if not fut.done():
                    fut.cancel()
                else:
                    fut.cancelled() or fut.exception()  # mark retrieved: no "never retrieved" noise
            self.stats.send_failures += 1
            log.warning("kafka round of %d records failed (%s: %s); spilling",
                        len(items), type(err).__name__, err)
            raise _RoundFailed() from err
        return sent

    async def _produce_round(self, items: list[Item], timeout_s: float) -> None:
        self._inflight = items
        try:
            sent = await self._send(items, timeout_s)
        except _RoundFailed:
            self._spill_items(self._take_inflight())
            raise
        self._inflight = []
        self.stats.written += sent
        self._inflight_since = None

    # -- spill and replay ----------------------------------------------------------------------

    def _spill_pending(self) -> bool:
        return self._spill.pending()

    def _spill_items(self, items: list[Item]) -> None:
        """Append to the spill in order; what it cannot keep is dropped and counted."""
        if not items:
            return
        kept, dropped = self._spill.append(items)
        if dropped:
            self._drop(dropped)
        if kept:
            if self._spill_since is None:
                self._spill_since = self._inflight_since or time.monotonic()
            self.stats.spilled += kept
            self.stats.spill_bytes = self._spill.bytes
        self._inflight_since = None

    async def _replay_chunk(self) -> None:
        items, lost = self._spill.head(_REPLAY_CHUNK)
        if lost:
            self._drop(lost)
        if items:
            sent = await self._send(items, self._timeout_s)  # _RoundFailed: retried from here
            self.stats.written += sent
            self.stats.replayed += sent
            self._spill.ack(len(items))
        self.stats.spill_bytes = self._spill.bytes
        if not self._spill.pending():
            self._spill_since = None

    def _update_lag(self) -> None:
        oldest = [t for t in (self._spill_since, self._inflight_since, self._buf_since) if t is not None]
        self.stats.lag_s = round(time.monotonic() - min(oldest), 3) if oldest else 0.0
