"""Rotated local segment files of JSON lines: the embedded sink's log and the Kafka spill.

A directory holds `<prefix>-<seq:08d>.jsonl` files. The segment being written is named
`....jsonl.open` and renamed when it is full (or on close), so a reader that takes only
`*.jsonl` never sees a half-written line. Sequence numbers order segments; lines keep order.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

_SEGMENT_RE = re.compile(r"^(?P<prefix>.+)-(?P<seq>\d{8})\.jsonl(?P<open>\.open)?$")


class SegmentWriter:
    """Appends newline-terminated records, rotating by size; synchronous and single-owner.

    `write_many` takes already-encoded records (without newlines) so one `write()` call covers a
    whole batch. Call it from one task only; it does no locking.
    """

    def __init__(self, directory: str | os.PathLike[str], *, prefix: str = "shadow",
                 segment_max_bytes: int = 64 * 1024 * 1024, fsync: bool = False):
        if segment_max_bytes < 1024:
            raise ValueError(f"segment_max_bytes={segment_max_bytes!r} must be at least 1024")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.segment_max_bytes = segment_max_bytes
        self.fsync = fsync
        existing = [seq for seq, _, _ in _list(self.directory, prefix)]
        self._seq = (max(existing) + 1) if existing else 1
        self._file: BinaryIO | None = None
        self._size = 0
        self.bytes_written = 0
        self.records_written = 0

    @property
    def current_path(self) -> Path:
        return self.directory / f"{self.prefix}-{self._seq:08d}.jsonl.open"

    def write_many(self, records: Iterable[bytes]) -> int:
        """Write records, one per line; returns the bytes written."""
        data = b"\n".join(records)
        if not data:
            return 0
        data += b"\n"
        f = self._file
        if f is None:
            f = self._file = open(self.current_path, "ab")
            self._size = f.tell()
        f.write(data)
        f.flush()
        if self.fsync:
            os.fsync(f.fileno())
        n = len(data)
        self._size += n
        self.bytes_written += n
        self.records_written += data.count(b"\n")
        if self._size >= self.segment_max_bytes:
            self.rotate()
        return n

    def rotate(self) -> Path | None:
        """Seal the open segment (rename to `.jsonl`); the next write starts a new one."""
        if self._file is None:
            return None
        self._file.close()
        self._file = None
        sealed = self.directory / f"{self.prefix}-{self._seq:08d}.jsonl"
        os.replace(self.current_path, sealed)
        self._seq += 1
        self._size = 0
        return sealed

    def close(self) -> None:
        self.rotate()


def _list(directory: Path, prefix: str | None = None) -> list[tuple[int, bool, Path]]:
    out: list[tuple[int, bool, Path]] = []
    if not directory.is_dir():
        return out
    for p in directory.iterdir():
        m = _SEGMENT_RE.match(p.name)
        if m and (prefix is None or m["prefix"] == prefix):
            out.append((int(m["seq"]), bool(m["open"]), p))
    out.sort(key=lambda t: (t[2].name.rsplit("-", 1)[0], t[0]))
    return out


def segment_paths(directory: str | os.PathLike[str], *, prefix: str | None = None,
                  include_open: bool = False) -> list[Path]:
    """Segment files in write order; sealed ones only unless `include_open`."""
    return [p for _, is_open, p in _list(Path(directory), prefix) if include_open or not is_open]


def read_lines(directory: str | os.PathLike[str], *, prefix: str | None = None,
               include_open: bool = False) -> Iterator[bytes]:
    """Every complete line of every segment, in order. A torn last line of an open segment
    (a crash mid-write) is skipped rather than returned half."""
    for path in segment_paths(directory, prefix=prefix, include_open=include_open):
        with open(path, "rb") as f:
            for line in f:
                if line.endswith(b"\n"):
                    yield line[:-1]
