"""Append-only, hash-chained audit log of promotion decisions (JSON lines).

Each record is ``{"seq", "ts", "kind", "actor", "payload", "prev_hash", "hash"}`` where
``hash = sha256(canonical JSON of the record without "hash")`` and ``prev_hash`` is the previous
record's hash (64 zeros for the first). Editing, removing, reordering or inserting a record breaks
the chain at that record, which `verify` reports by seq. Cutting records off the *end* leaves a
valid shorter chain; pass the last known head hash (`expect_head`) to catch that too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

GENESIS_HASH = "0" * 64


class AuditError(ValueError):
    """The audit log cannot be read or appended to (names the file and line)."""


def canonical_json(obj: Any) -> bytes:
    """The byte string that is hashed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def record_hash(record: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON of `record` without its "hash" field."""
    return hashlib.sha256(canonical_json({k: v for k, v in record.items() if k != "hash"})).hexdigest()


@dataclass(frozen=True)
class Problem:
    seq: int | None  # the seq of the offending record (None when the line does not parse)
    line: int  # 1-based line number in the file
    message: str

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "unparsable record"
        return f"line {self.line} ({where}): {self.message}"


@dataclass
class VerifyResult:
    records: int = 0
    head_hash: str = GENESIS_HASH
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    """One audit log file. Appends take an exclusive `flock` so concurrent CLI runs stay chained."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.clock = clock

    def append(self, kind: str, actor: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Add one record after the current last one and return it (with its hash)."""
        if not actor:
            raise AuditError("audit records need an actor (who did it)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                f.seek(0, os.SEEK_END)
                if f.tell() and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n":
                    # A crash mid-write left a partial line; appending would fuse it with this record.
                    raise AuditError(f"{self.path} ends with a partial record; inspect it with "
                                     "`shadowlane audit verify` before appending")
                last = _last_record(f, self.path)
                record: dict[str, Any] = {
                    "seq": (last["seq"] + 1) if last else 1,
                    "ts": round(float(self.clock()), 6),
                    "kind": kind,
                    "actor": actor,
                    "payload": payload,
                    "prev_hash": last["hash"] if last else GENESIS_HASH,
                }
                record["hash"] = record_hash(record)
                f.seek(0, os.SEEK_END)
                f.write(canonical_json(record) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return record

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record in file order (unverified; call `verify` to trust them)."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield _parse(line, self.path, n)

    def verify(self, *, expect_head: str | None = None) -> VerifyResult:
        """Check the whole chain; see `verify_lines`."""
        if not self.path.exists():
            raise AuditError(f"audit log {self.path} does not exist")
        with open(self.path, "rb") as f:
            return verify_lines(f, expect_head=expect_head)


def verify_lines(lines: Iterable[bytes], *, expect_head: str | None = None) -> VerifyResult:
    """Walk the chain and report every record whose content, seq or link is wrong.

    After a problem the walk re-anchors on the offending record, so one edit yields one problem
    and later intact records are not all reported again.
    """
    result = VerifyResult()
    prev_hash, prev_seq = GENESIS_HASH, 0
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            result.problems.append(Problem(None, n, f"not valid JSON: {err}"))
            continue
        seq = rec.get("seq") if isinstance(rec.get("seq"), int) else None
        result.records += 1
        missing = [k for k in ("seq", "ts", "kind", "actor", "payload", "prev_hash", "hash") if k not in rec]
        try:
            computed = None if missing else record_hash(rec)
        except ValueError:  # NaN/Infinity or a lone surrogate, which append() never writes: an edit
            computed = ""
        if missing:
            result.problems.append(Problem(seq, n, f"missing fields {missing}"))
        elif rec["hash"] != computed:
            result.problems.append(Problem(seq, n, "content does not match its hash (record edited)"))
        elif seq != prev_seq + 1:
            what = ("a record before it was removed or moved" if seq is not None and seq > prev_seq + 1
                    else "records reordered, duplicated or inserted")
            result.problems.append(Problem(seq, n, f"seq {seq} follows seq {prev_seq}: {what}"))
        elif rec["prev_hash"] != prev_hash:
            result.problems.append(Problem(seq, n, "prev_hash does not match the previous record's hash "
                                                   "(record removed, reordered or inserted before it)"))
        prev_hash = rec.get("hash", prev_hash)
        prev_seq = seq if seq is not None else prev_seq
    result.head_hash = prev_hash
    if expect_head is not None and prev_hash != expect_head and not result.problems:
        result.problems.append(Problem(prev_seq, 0, f"last hash {prev_hash[:12]}… is not the expected head "
                                                    f"{expect_head[:12]}… (records cut off the end)"))
    return result


def _parse(line: bytes, path: Path, n: int) -> dict[str, Any]:
    try:
        rec = json.loads(line)
    except ValueError as err:
        raise AuditError(f"{path}:{n}: not valid JSON: {err}") from None
    if not isinstance(rec, dict) or "seq" not in rec or "hash" not in rec:
        raise AuditError(f"{path}:{n}: not an audit record")
    return rec


def _last_record(f: Any, path: Path) -> dict[str, Any] | None:
    """The last record of an open file, read backwards from the end (logs grow without bound)."""
    f.seek(0, os.SEEK_END)
    end = f.tell()
    if end == 0:
        return None
    block, data = 4096, b""
    pos = end
    while pos > 0:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
        lines = [ln for ln in data.split(b"\n") if ln.strip()]
        if len(lines) >= 2 or (pos == 0 and lines):
            return _parse(lines[-1], path, -1)
    return None
