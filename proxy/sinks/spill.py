"""The Kafka sink's local spill: bounded, ordered, shared safely by worker processes.

Records that cannot reach Kafka are appended to segment files (`shadowlane.segments`), one line
per record: `<topic>\\t<base64 key or ->\\t<record>`. Several proxy worker processes share one
spill directory: each `Spill` writes its own subdirectory (`<UTC start>-p<pid>-<n>`) and holds an
flock on its `.lock` while open. On `open()` it adopts the subdirectories whose lock it can take
— left by sinks that stopped or crashed (the kernel drops a dead process's lock) — moving their
segments in ahead of its own, oldest first. Replay reads the oldest segment and deletes it once
every line was acknowledged (`ack`).

Single-owner: after `open()`, only the sink's thread calls it.
"""

from __future__ import annotations

import base64
import fcntl
import itertools
import logging
import os
import time
from pathlib import Path

from shadowlane.segments import SegmentWriter, segment_paths

log = logging.getLogger("shadowlane.sink.kafka")

PREFIX = "spill"
LOCK = ".lock"
_NO_KEY = b"-"  # marker for a record without key (not in the base64 alphabet)
_instances = itertools.count(1)

Item = tuple[str, "bytes | None", bytes]  # (topic, key, value)


class Spill:
    """Append items in order up to `max_bytes`; hand them back oldest first for replay."""

    def __init__(self, root: str | os.PathLike[str], *, max_bytes: int, segment_bytes: int):
        self.root = Path(root)
        self.directory = self.root  # this spill's own subdirectory once open
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.bytes = 0  # bytes held in segments, adopted and own
        self._writer: SegmentWriter | None = None
        self._lock_fd: int | None = None
        self._head: Path | None = None  # oldest segment, being replayed ...
        self._head_items: list[Item] = []  # ... its readable records ...
        self._head_pos = 0  # ... and how many the broker acknowledged

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> int:
        """Create this spill's subdirectory and adopt those of spills that are gone; returns
        how many were adopted. `bytes` then counts everything waiting for replay."""
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-p{os.getpid()}-{next(_instances):06d}"
        own = self.root / name
        own.mkdir()
        self._lock_fd = os.open(own / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.directory = own
        adopted = self._adopt()
        self._writer = SegmentWriter(own, prefix=PREFIX, segment_max_bytes=self.segment_bytes)
        self.bytes = sum(p.stat().st_size for p in segment_paths(own, prefix=PREFIX))
        self._head, self._head_items, self._head_pos = None, [], 0
        return adopted

    def _adopt(self) -> int:
        seq, adopted = 0, 0
        for other in sorted(p for p in self.root.iterdir() if p.is_dir() and p != self.directory):
            try:
                fd = os.open(other / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
            except OSError:  # removed meanwhile by its owner or another adopter
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live spill's
                os.close(fd)
                continue
            try:
                for path in segment_paths(other, prefix=PREFIX, include_open=True):
                    seq += 1  # an `.open` one (a crash) is sealed by the move; a torn line is skipped
                    os.replace(path, self.directory / f"{PREFIX}-{seq:08d}.jsonl")
                os.unlink(other / LOCK)
                other.rmdir()
                adopted += 1
            except OSError as err:
                log.warning("could not adopt spill %s: %s", other, err)
            finally:
                os.close(fd)
        return adopted

    def close(self) -> None:
        """Seal the open segment, remove the subdirectory if empty, release the lock. Idempotent."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._lock_fd is None:
            return
        try:
            if not segment_paths(self.directory, prefix=PREFIX, include_open=True):
                os.unlink(self.directory / LOCK)
                self.directory.rmdir()
        except OSError as err:
            log.debug("spill directory %s not removed: %s", self.directory, err)
        os.close(self._lock_fd)
        self._lock_fd = None

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def pending(self) -> bool:
        """Records wait for replay."""
        return self.bytes > 0 or self._head is not None

    # -- write -----------------------------------------------------------------------------------

    def append(self, items: list[Item]) -> tuple[int, int]:
        """Append in order; returns (kept, dropped). Dropped: no room under `max_bytes`, a value
        with a newline (would break the line format; encoders never make one), or a failed write."""
        if self._writer is None:
            return 0, len(items)
        room = self.max_bytes - self.bytes
        lines: list[bytes] = []
        size = dropped = 0
        for i, (topic, key, value) in enumerate(items):
            if b"\n" in value:
                dropped += 1
                continue
            line = b"%s\t%s\t%s" % (topic.encode(), _NO_KEY if key is None else base64.b64encode(key), value)
            if size + len(line) + 1 > room:  # full: the rest goes too, so what is kept is a prefix
                dropped += len(items) - i
                break
            lines.append(line)
            size += len(line) + 1
        if not lines:
            return 0, dropped
        try:
            self.bytes += self._writer.write_many(lines)
        except OSError as err:
            log.error("spill write to %s failed, %d records dropped: %s", self.directory, len(lines), err)
            return 0, dropped + len(lines)
        return len(lines), dropped

    # -- replay ----------------------------------------------------------------------------------

    def head(self, n: int) -> tuple[list[Item], int]:
        """Up to `n` not yet acknowledged records of the oldest segment, and how many records
        were found unreadable (torn or corrupt lines) while loading it: those are lost."""
        lost = 0
        if self._head is None:
            lost = self._load_head()
        return self._head_items[self._head_pos:self._head_pos + n], lost

    def ack(self, n: int) -> None:
        """The first `n` records `head()` returned are on the broker; a finished segment goes."""
        if self._head is None:
            return
        self._head_pos += n
        if self._head_pos >= len(self._head_items):
            size = self._head.stat().st_size
            self._head.unlink()
            self.bytes = max(0, self.bytes - size)
            self._head, self._head_items, self._head_pos = None, [], 0

    def _load_head(self) -> int:
        assert self._writer is not None
        sealed = segment_paths(self.directory, prefix=PREFIX)
        if not sealed:
            self._writer.rotate()  # seal the segment being written so it can be replayed
            sealed = segment_paths(self.directory, prefix=PREFIX)
            if not sealed:
                self.bytes = 0
                return 0
        path = sealed[0]
        lines = path.read_bytes().split(b"\n")
        lost = 1 if lines.pop() else 0  # a torn last line (crash mid-write), as read_lines skips it
        items: list[Item] = []
        for line in lines:
            try:
                topic, key, value = line.split(b"\t", 2)
                items.append((topic.decode(), None if key == _NO_KEY else base64.b64decode(key), value))
            except ValueError:
                lost += 1
        if lost:
            log.error("%d unreadable spill records in %s dropped", lost, path)
        self._head, self._head_items, self._head_pos = path, items, 0
        if not items:  # nothing readable: the segment is done
            self.ack(0)
        return lost
