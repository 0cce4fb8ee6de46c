"""The sink contract: a synchronous, never-blocking front door and a background writer.

`emit()` is called from the shadow workers (never from the champion's request path). It must
not await, block or raise: a record it cannot keep is dropped and counted in `stats.dropped`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from proxy.config import DeploymentConfig


@dataclass
class SinkStats:
    emitted: int = 0  # handed to emit()
    written: int = 0  # durably handed on (file written / broker acknowledged)
    dropped: int = 0  # lost, counted
    spilled: int = 0  # kafka: written to the local spill instead
    replayed: int = 0  # kafka: spilled records later produced
    lag_s: float = 0.0  # age of the oldest record not yet written (0 when caught up)


class Sink(Protocol):
    @property
    def stats(self) -> SinkStats: ...

    async def start(self) -> None: ...

    def emit(self, record: bytes, key: bytes | None) -> None:
        """Queue one encoded record; never blocks, never raises."""
        ...

    def depth(self) -> int:
        """Records buffered in memory, not yet written."""
        ...

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Flush what can be flushed within `timeout_s`, then release everything. Idempotent."""
        ...


class NullSink:
    """Discards records (counted as written): for benchmarks that measure the proxy alone."""

    def __init__(self) -> None:
        self.stats = SinkStats()

    async def start(self) -> None:
        pass

    def emit(self, record: bytes, key: bytes | None) -> None:
        self.stats.emitted += 1
        self.stats.written += 1

    def depth(self) -> int:
        return 0

    async def stop(self, timeout_s: float = 5.0) -> None:
        pass


def build_sink(cfg: "DeploymentConfig") -> Sink:
    s = cfg.sink
    if s.type == "file":
        from proxy.sinks.file import FileSink

        return FileSink(s.directory, segment_max_bytes=s.segment_max_bytes,
                        flush_interval_s=s.flush_interval_ms / 1000, max_buffered=s.max_buffered_records)
    if s.type == "kafka":
        from proxy.sinks.kafka import KafkaSink  # issue 4

        return KafkaSink.from_config(s)
    return NullSink()
