"""The embedded default sink: rotated local segment files of JSON lines."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from proxy.sinks.base import SinkStats
from shadowlane.segments import SegmentWriter

log = logging.getLogger("shadowlane.sink.file")


class FileSink:
    """Buffers records in memory and appends them in batches every `flush_interval_s`.

    One `write()` per flush keeps the per-record cost to a list append. Writes to the page cache
    are fast enough to do on the loop; a full buffer (disk stalled) drops and counts.
    """

    def __init__(self, directory: Path, *, segment_max_bytes: int = 64 * 1024 * 1024,
                 flush_interval_s: float = 0.05, max_buffered: int = 100_000):
        self.directory = Path(directory)
        self.stats = SinkStats()
        # Several worker processes may share the directory: each writes its own segment series,
        # named by start time and pid, so names sort by run and no two writers share a file.
        prefix = f"shadow-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-p{os.getpid()}"
        self._writer = SegmentWriter(self.directory, prefix=prefix, segment_max_bytes=segment_max_bytes)
        self._interval = flush_interval_s
        self._max = max_buffered
        self._buf: list[bytes] = []
        self._oldest = 0.0  # monotonic time of the first record in the buffer
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="shadowlane-file-sink")

    def emit(self, record: bytes, key: bytes | None) -> None:
        self.stats.emitted += 1
        if len(self._buf) >= self._max:
            self.stats.dropped += 1
            return
        if not self._buf:
            self._oldest = time.monotonic()
        self._buf.append(record)

    def depth(self) -> int:
        return len(self._buf)

    def flush(self) -> None:
        if not self._buf:
            return
        batch, self._buf = self._buf, []
        self.stats.lag_s = round(time.monotonic() - self._oldest, 3)
        try:
            self._writer.write_many(batch)
            self.stats.written += len(batch)
        except OSError as err:
            self.stats.dropped += len(batch)
            log.error("shadow log write failed, %d records dropped: %s", len(batch), err)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.flush()

    async def stop(self, timeout_s: float = 5.0) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self.flush()
        self._writer.close()
