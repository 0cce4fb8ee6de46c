"""Ground-truth labels: JSON lines read in chunks into sorted numpy columns, joined to the rows of a
`ShadowFrame` on (request id, row). Labels arrive late: a row without one is unlabelled (-1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import orjson
from xxhash import xxh3_64_intdigest

from gates.reader import CHUNK_RECORDS, ReadError, ShadowFrame, chunked, join_key, open_source

@dataclass
class Labels:
    """Ground truth sorted by join key, one per (request, row); the latest `ts` wins."""

    key: np.ndarray  # uint64, sorted, unique
    label: np.ndarray  # int8
    ts: np.ndarray  # float64

    def __len__(self) -> int:
        return int(self.key.size)

    @classmethod
    def from_arrays(cls, request_hashes: np.ndarray, rows: np.ndarray, labels: np.ndarray,
                    ts: np.ndarray | None = None) -> "Labels":
        raw = join_key(np.asarray(request_hashes, dtype=np.uint64), np.asarray(rows))
        ts = np.zeros(raw.size) if ts is None else np.asarray(ts, dtype=np.float64)
        order = np.argsort(raw)
        keys = raw[order]
        if keys.size and np.any(keys[1:] == keys[:-1]):
            # Corrected labels: the latest ts per key wins (a slower two-key sort, only when needed).
            order = np.lexsort((ts, raw))
            keys = raw[order]
        lab, ts = np.asarray(labels, dtype=np.int8)[order], ts[order]
        last = np.r_[keys[1:] != keys[:-1], True] if keys.size else np.empty(0, bool)
        return cls(keys[last], lab[last], ts[last])


def read_labels(source: str | os.PathLike[str] | Iterable[bytes], *, until_ts: float | None = None,
                progress: bool = False) -> Labels:
    """Read `{"request_id", "row"?, "label", "ts"?}` JSON lines; labels after `until_ts` are ignored."""
    lines = source if not isinstance(source, (str, os.PathLike)) else open_source(
        source, progress=progress, what="labels")
    hs: list[np.ndarray] = []
    rs: list[np.ndarray] = []
    ls: list[np.ndarray] = []
    tss: list[np.ndarray] = []
    n = 0
    for chunk in chunked(lines, CHUNK_RECORDS):
        h, r, lab, t = [], [], [], []
        for line in chunk:
            n += 1
            try:
                o = orjson.loads(line)
                y = o["label"]
                if isinstance(y, bool):
                    y = int(y)
                if y not in (0, 1):
                    raise ValueError(f"label must be 0 or 1, got {y!r}")
                ts = float(o.get("ts") or 0.0)
                if until_ts is not None and ts > until_ts:
                    continue
                h.append(xxh3_64_intdigest(o["request_id"].encode()))
                r.append(int(o.get("row", 0)))
                lab.append(y)
                t.append(ts)
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                where = source if isinstance(source, (str, os.PathLike)) else "labels"
                raise ReadError(f"{where}: line {n} is not a label record: {err}") from err
        hs.append(np.array(h, dtype=np.uint64))
        rs.append(np.array(r, dtype=np.int64))
        ls.append(np.array(lab, dtype=np.int8))
        tss.append(np.array(t, dtype=np.float64))
    if not hs:
        return Labels(np.empty(0, np.uint64), np.empty(0, np.int8), np.empty(0))
    return Labels.from_arrays(np.concatenate(hs), np.concatenate(rs), np.concatenate(ls), np.concatenate(tss))


def attach_labels(frame: ShadowFrame, labels: Labels) -> None:
    """Fill `frame.rows.label` from `labels` (-1 where no label has arrived yet)."""
    rows = frame.rows
    keys = join_key(frame.records.request_hash[rows.record], rows.row)
    out = np.full(keys.size, -1, dtype=np.int8)
    if len(labels) and keys.size:
        # Sorted needles walk the label keys in order: far fewer cache misses than random lookups.
        order = np.argsort(keys)
        sorted_keys = keys[order]
        pos = np.minimum(np.searchsorted(labels.key, sorted_keys), labels.key.size - 1)
        hit = labels.key[pos] == sorted_keys
        out[order[hit]] = labels.label[pos[hit]]
    rows.label = out
