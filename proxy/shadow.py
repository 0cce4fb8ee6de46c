"""Shadow work, off the hot path: a bounded queue, workers that batch, one record per pair.

The champion's request path calls only `submit()` — a deque append and an event set, after the
response has been sent. Workers drain the queue in batches, run each shadow model in its own
daemon thread (an in-process model that hangs must not hold the event loop, nor interpreter exit),
bound every call with the shadow's timeout, and hand encoded records to the sink. A shadow that
raises, hangs or is slow produces a record with status "error"/"timeout"; a full queue drops the
job and counts it. Nothing here can change a champion response.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from typing import Any, Callable, NamedTuple

import numpy as np
from xxhash import xxh3_64

from proxy.backends import BackendError
from proxy.deployment import Endpoint, ShadowTarget, Variant
from proxy.sinks.base import Sink
from shadowlane.record import RECORD_VERSION, encode

log = logging.getLogger("shadowlane.shadow")
_YIELD_EVERY = 16  # records built between yields to the event loop (~15 µs each)


class ShadowJob(NamedTuple):
    endpoint: Endpoint
    mirrors: tuple[int, ...]
    feeds: dict[str, np.ndarray]
    rows: int
    champion: Variant
    champion_outputs: dict[str, np.ndarray]
    champion_latency_s: float
    request_id: str
    unit_id: str | None
    protocol: str
    attributes: dict[str, str]
    ts: float


class _DaemonThread:
    """A one-thread executor whose thread is a daemon: a hung shadow cannot block shutdown
    (ThreadPoolExecutor joins its threads at exit)."""

    def __init__(self, name: str):
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._q.put((loop, fut, fn, args))
        return fut

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            loop, fut, fn, args = item
            if fut.done():  # cancelled by a timeout while it waited its turn
                continue
            try:
                result, exc = fn(*args), None
            except BaseException as err:  # handed to the awaiting coroutine, not swallowed
                result, exc = None, err
            try:
                loop.call_soon_threadsafe(_settle, fut, result, exc)
            except RuntimeError:  # loop closed during shutdown
                return

    def shutdown(self) -> None:
        self._q.put(None)


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def features_hash(feeds: dict[str, np.ndarray]) -> str:
    """xxh3 over inputs sorted by name: name, 0x00, dtype, 0x00, shape (int64 LE), C-order LE bytes."""
    h = xxh3_64()
    for name in sorted(feeds):
        arr = feeds[name]
        h.update(name.encode())
        h.update(b"\x00" + arr.dtype.str.encode() + b"\x00")
        h.update(np.asarray(arr.shape, dtype="<i8").tobytes())
        if arr.dtype != object:
            h.update(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
        else:
            h.update("\x1f".join(map(str, arr.reshape(-1))).encode())
    return f"xxh3:{h.hexdigest()}"


def _score(outputs: dict[str, np.ndarray]) -> np.ndarray | None:
    """The per-row score: P(class 1) of a binary classifier, else the first float output."""
    p = outputs.get("probabilities")
    if p is not None and p.ndim == 2 and p.shape[1] == 2:
        return p[:, 1]
    for arr in outputs.values():
        if arr.dtype.kind == "f":
            return arr.reshape(arr.shape[0], -1)[:, 0] if arr.ndim else arr.reshape(1)
    return None


def _labels(outputs: dict[str, np.ndarray]) -> np.ndarray | None:
    lab = outputs.get("label")
    if lab is not None:
        return lab.reshape(-1)
    for arr in outputs.values():
        if arr.dtype.kind in "iub":
            return arr.reshape(-1)
    return None


class ShadowDispatcher:
    def __init__(self, *, sink: Sink, queue_size: int = 10_000, workers: int = 1, max_batch: int = 64,
                 record_features: bool = True,
                 decoupled: bool = False, linger_s: float = 0.002):
        self.sink = sink
        self._q: deque[ShadowJob] = deque()
        self._max = queue_size
        self._workers = workers
        self._max_batch = max_batch
        self._record_features = record_features
        # Decoupled mode: publish the request once to the requests topic; shadow-workers run it.
        self._decoupled = decoupled
        self._linger_s = linger_s
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._threads: dict[int, _DaemonThread] = {}
        self.dropped = 0
        self.completed = 0
        self.failed = 0
        self._busy = 0

    # ---- front door (hot path) ----------------------------------------------------------
    def submit(self, job: ShadowJob) -> None:
        shadows = job.endpoint.shadows
        if len(self._q) >= self._max:
            self.dropped += len(job.mirrors)
            for i in job.mirrors:
                shadows[i].dropped_full.inc()
            return
        self._q.append(job)
        for i in job.mirrors:
            shadows[i].enqueued.inc()
        self._wake.set()

    def depth(self) -> int:
        return len(self._q)

    def idle(self) -> bool:
        return not self._q and self._busy == 0

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        for i in range(self._workers):
            task = asyncio.create_task(self._worker(), name=f"shadowlane-shadow-{i}")
            self._tasks.add(task)
            task.add_done_callback(self._worker_done)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("shadow worker died: %r", task.exception())

    async def drain(self, timeout_s: float) -> bool:
        """Wait until queued jobs are done (or the deadline); True if everything ran."""
        deadline = time.monotonic() + timeout_s
        while not self.idle() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.idle()

    async def stop(self, timeout_s: float = 5.0) -> None:
        await self.drain(timeout_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        leftover = len(self._q)
        if leftover:
            self.dropped += leftover
            log.warning("shadow: %d queued jobs dropped at shutdown", leftover)
            self._q.clear()
        for t in self._threads.values():
            t.shutdown()

    # ---- workers ---------------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            if not self._q:
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._q) < self._max_batch and self._linger_s > 0:
                # Let a batch form: one model call and one wake-up for many requests costs far
                # less per request than one each, and shadows have no client waiting.
                await asyncio.sleep(self._linger_s)
            batch = [self._q.popleft() for _ in range(min(self._max_batch, len(self._q)))]
            self._busy += 1
            try:
                if self._decoupled:
                    for job in batch:
                        self._publish(job)
                    continue
                groups: dict[tuple[str, int], list[ShadowJob]] = {}
                for job in batch:
                    for i in job.mirrors:
                        groups.setdefault((job.endpoint.name, i), []).append(job)
                await asyncio.gather(*(self._run_group(jobs[0].endpoint.shadows[i], jobs)
                                       for (_, i), jobs in groups.items()))
            except Exception:  # a bug here must not kill the worker; the jobs are lost, say so
                log.exception("shadow batch of %d jobs failed", len(batch))
                self.failed += len(batch)
            finally:
                self._busy -= 1

    def _thread_for(self, shadow: ShadowTarget) -> _DaemonThread:
        t = self._threads.get(id(shadow.backend))
        if t is None:
            t = self._threads[id(shadow.backend)] = _DaemonThread(f"shadowlane-model-{shadow.label}")
        return t

    async def _call(self, shadow: ShadowTarget, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        backend = shadow.backend
        if shadow.inline:
            # Between requests on the loop: cheap for the small models `auto` picks. A call
            # cannot be interrupted, so an overrun is recorded as a timeout, and three in a row
            # move the model to its own thread for good.
            t0 = time.perf_counter()
            out = backend.predict(feeds)
            if time.perf_counter() - t0 > shadow.timeout_s:
                shadow.overruns += 1
                if shadow.overruns >= 3:
                    shadow.inline = False
                    log.warning("shadow %s overran its %g ms timeout inline 3 times: moved to a thread",
                                shadow.label, shadow.timeout_s * 1000)
                raise asyncio.TimeoutError
            shadow.overruns = 0
            await asyncio.sleep(0)  # let waiting requests in before the next batch
            return out
        if backend.sync:
            fut = self._thread_for(shadow).submit(backend.predict, feeds)
        else:
            fut = asyncio.ensure_future(backend.infer(feeds))
        return await asyncio.wait_for(fut, shadow.timeout_s)

    async def _run_group(self, shadow: ShadowTarget, jobs: list[ShadowJob]) -> None:
        # Rows of several requests go through the model in one call when shapes allow it.
        if len(jobs) > 1 and shadow.backend.batchable and _stackable(jobs):
            feeds = {k: np.concatenate([j.feeds[k] for j in jobs]) for k in jobs[0].feeds}
            outcome, latency = await self._timed(shadow, feeds)
            total = sum(j.rows for j in jobs)
            # Divergence in one numpy pass for the batch: per record it is numpy on 1-row arrays.
            observed = isinstance(outcome, dict) and self._observe_divergence_batch(shadow, jobs, outcome)
            start = 0
            for n, job in enumerate(jobs, 1):
                part = outcome
                if isinstance(outcome, dict):
                    part = {k: v[start:start + job.rows] if v.ndim and v.shape[0] == total else v
                            for k, v in outcome.items()}
                    start += job.rows
                self._record(job, shadow, part, latency, total, observed=observed)
                if n % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # building records is loop time: let requests in
            return
        for job in jobs:
            outcome, latency = await self._timed(shadow, job.feeds)
            self._record(job, shadow, outcome, latency, job.rows)

    async def _timed(self, shadow: ShadowTarget, feeds: dict[str, np.ndarray]) -> tuple[Any, float]:
        t0 = time.perf_counter()
        try:
            out: Any = await self._call(shadow, feeds)
        except asyncio.TimeoutError:
            out = ("timeout", f"no answer within {shadow.timeout_s * 1000:g} ms")
        except BackendError as err:
            out = ("error", str(err))
        except Exception as err:  # any model failure is a recorded result, never raised onward
            out = ("error", f"{type(err).__name__}: {err}")
        latency = time.perf_counter() - t0
        shadow.duration.observe(latency)
        return out, latency

    def _record(self, job: ShadowJob, shadow: ShadowTarget, outcome: Any, latency_s: float, batch_rows: int,
                *, observed: bool = False) -> None:
        ok = isinstance(outcome, dict)
        if ok:
            shadow.completed.inc()
            self.completed += 1
            if not observed:
                self._observe_divergence(shadow, job.champion_outputs, outcome)
            status, error, outputs = "ok", None, outcome
        else:
            status, error = outcome
            outputs = None
            (shadow.failed_timeout if status == "timeout" else shadow.failed_error).inc()
            self.failed += 1
        record = self._common(job)
        record["shadow"] = {"model": shadow.backend.name, "version": shadow.backend.version, "variant": shadow.label, "status": status,
                            "latency_ms": latency_s * 1000, "outputs": outputs, "error": error,
                            "batch_rows": batch_rows}
        record["features_hash"] = features_hash(job.feeds)
        record["features"] = self._features(job) if self._record_features else None
        record["attributes"] = job.attributes
        try:
            data = encode(record)  # type: ignore[arg-type]
        except TypeError as err:  # an output orjson cannot serialise: keep the pair, lose the payload
            record["shadow"]["outputs"] = None  # type: ignore[index]
            record["shadow"]["status"], record["shadow"]["error"] = "error", f"unserialisable output: {err}"  # type: ignore[index]
            data = encode(record)  # type: ignore[arg-type]
        self.sink.emit(data, job.unit_id.encode() if job.unit_id is not None else None)

    def _common(self, job: ShadowJob) -> dict[str, Any]:
        """The fields a shadow record and a request record share, in record order."""
        champion = job.champion.backend
        return {
            "v": RECORD_VERSION, "ts": job.ts, "request_id": job.request_id, "unit_id": job.unit_id,
            "endpoint": job.endpoint.name, "protocol": job.protocol, "rows": job.rows,
            "champion": {"model": champion.name, "version": champion.version, "variant": job.champion.label, "status": "ok",
                         "latency_ms": job.champion_latency_s * 1000, "outputs": job.champion_outputs,
                         "error": None},
        }

    def _publish(self, job: ShadowJob) -> None:
        from proxy.shadow_worker import tensor  # decoupled mode only: keeps aiokafka off the default path
        from shadowlane.record import encode_request

        record = self._common(job)
        record["shadows"] = [job.endpoint.shadows[i].label for i in job.mirrors]
        record["inputs"] = {k: tensor(v) for k, v in job.feeds.items()}
        record["features_hash"] = features_hash(job.feeds)
        record["features"] = self._features(job) if self._record_features else None
        record["attributes"] = job.attributes
        for i in job.mirrors:  # handed on: the shadow-worker completes them
            job.endpoint.shadows[i].completed.inc()
        self.completed += len(job.mirrors)
        self.sink.emit_request(encode_request(record), job.unit_id.encode() if job.unit_id is not None else None)  # type: ignore[attr-defined, arg-type]

    def _features(self, job: ShadowJob) -> dict[str, Any]:
        names = job.endpoint.feature_names
        if names and len(job.feeds) == 1:
            (x,) = job.feeds.values()
            if x.ndim == 2 and x.shape[1] == len(names):
                cols = np.ascontiguousarray(x.T)
                return {n: cols[j] for j, n in enumerate(names)}
        return {k: np.ascontiguousarray(v) for k, v in job.feeds.items()}

    @staticmethod
    def _observe_divergence_batch(shadow: ShadowTarget, jobs: list[ShadowJob], outputs: dict[str, np.ndarray]) -> bool:
        """`_observe_divergence` for a whole batch in one numpy pass. False (nothing observed) when
        the batch does not line up row for row: the caller then observes record by record."""
        if any(j.rows > 256 for j in jobs):  # per record, only the first 256 rows are observed
            return False
        b, lb = _score(outputs), _labels(outputs)
        if b is None or lb is None:
            return False
        scores: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        for job in jobs:
            s, lab = _score(job.champion_outputs), _labels(job.champion_outputs)
            if s is None or lab is None:
                return False
            scores.append(s)
            labels.append(lab)
        a: np.ndarray = np.concatenate(scores)
        la: np.ndarray = np.concatenate(labels)
        if a.shape != b.shape or la.shape != lb.shape:
            return False
        observe = shadow.divergence.observe
        for d in np.abs(a.astype(np.float64) - b).tolist():
            observe(d)
        same = int(np.count_nonzero(la == lb))
        if same:
            shadow.agree.inc(same)
        if same != la.size:
            shadow.disagree.inc(la.size - same)
        return True

    @staticmethod
    def _observe_divergence(shadow: ShadowTarget, champion: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> None:
        a, b = _score(champion), _score(other)
        if a is not None and b is not None and a.shape == b.shape:
            for d in np.abs(a.astype(np.float64) - b)[:256]:
                shadow.divergence.observe(float(d))
        la, lb = _labels(champion), _labels(other)
        if la is not None and lb is not None and la.shape == lb.shape:
            same = int(np.count_nonzero(la == lb))
            if same:
                shadow.agree.inc(same)
            if same != la.size:
                shadow.disagree.inc(la.size - same)


def _stackable(jobs: list[ShadowJob]) -> bool:
    first = jobs[0].feeds
    for job in jobs[1:]:
        f = job.feeds
        if f.keys() != first.keys():
            return False
        for k, v in f.items():
            w = first[k]
            if v.dtype != w.dtype or v.shape[1:] != w.shape[1:] or v.ndim == 0:
                return False
    return True
