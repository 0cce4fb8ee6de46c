"""Shadow records into columnar numpy arrays, streaming in chunks (labels: `gates.labels`).

JSON lines are parsed a chunk at a time and only the figures the gates need are kept, as numpy
columns: memory grows with the number of rows of the candidate (a few dozen bytes per row), never
with the JSON objects. Production features, needed by the drift and schema gates, are kept for a
deterministic hash sample of requests capped at `max_feature_rows`.

Sources: a directory of segment files (`shadowlane.segments`) or a Kafka topic
(`kafka://host:port/topic?start_ts=..&end_ts=..`), see `open_source`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import orjson
from xxhash import xxh3_64_intdigest

from shadowlane.segments import read_lines, segment_paths

CHUNK_RECORDS = 16_384  # lines parsed per step: bounds the transient Python objects
STATUS_CODES = {"ok": 0, "error": 1, "timeout": 2}
CANDIDATE, NOISE, OTHER = 0, 1, 2  # record kinds: candidate shadow, champion-vs-champion, anything else
_ROW_MIX = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio odd constant: spreads row numbers over the key


class ReadError(ValueError):
    """A log or label source is unusable; the message names the file/topic and what was wrong."""


def request_hash(request_id: str) -> int:
    """The 64-bit key requests are joined on (records with labels, features with rows)."""
    return xxh3_64_intdigest(request_id.encode())


def join_key(req_hash: np.ndarray, row: np.ndarray) -> np.ndarray:
    """One uint64 per (request, row): labels and predictions meet on it."""
    with np.errstate(over="ignore"):
        return req_hash.astype(np.uint64) + row.astype(np.uint64) * _ROW_MIX


@dataclass
class Categorical:
    """A string column as integer codes into `categories`; code -1 means the value was absent."""

    codes: np.ndarray
    categories: list[str]


@dataclass
class Records:
    """One entry per (de-duplicated) record in the window, of any shadow model."""

    request_hash: np.ndarray  # uint64
    ts: np.ndarray  # float64 unix seconds
    kind: np.ndarray  # int8: CANDIDATE, NOISE or OTHER
    rows: np.ndarray  # int32 batch size
    champion_status: np.ndarray  # int8 STATUS_CODES
    shadow_status: np.ndarray
    champion_latency_ms: np.ndarray  # float32
    shadow_latency_ms: np.ndarray
    champion_version: np.ndarray  # int32
    attributes: dict[str, Categorical]

    def __len__(self) -> int:
        return int(self.ts.size)


@dataclass
class Rows:
    """One entry per row of every candidate and champion-vs-champion record."""

    record: np.ndarray  # int64 index into Records
    row: np.ndarray  # int32 row within the request
    champion_score: np.ndarray  # float64, NaN when that side has no answer
    shadow_score: np.ndarray
    champion_label: np.ndarray  # int8 predicted class, -1 when that side has no answer
    shadow_label: np.ndarray
    label: np.ndarray | None = None  # int8 ground truth after `attach_labels`, -1 = not (yet) known

    def __len__(self) -> int:
        return int(self.record.size)


@dataclass
class FeatureSample:
    """Production features of a hash sample of the candidate's requests, one float column per feature."""

    columns: dict[str, np.ndarray]  # name -> float64 (NaN where absent or not numeric)
    json_types: dict[str, set[str]]  # name -> JSON types seen: float, int, bool, str, null, list
    names_seen: set[str]  # every column name seen in any candidate record (not only sampled ones)
    inputs_seen: set[str]  # top-level keys of `features` (column or tensor input names)
    tensor_shapes: dict[str, set[tuple[int, ...]]]  # input name -> inner shapes seen (tensor inputs)
    sample_share: float  # share of requests sampled (1.0 = all)
    records_with_features: int
    records_without_features: int

    @property
    def n_rows(self) -> int:
        return int(next(iter(self.columns.values())).size) if self.columns else 0


@dataclass
class ShadowFrame:
    """Everything the gates read from a shadow log, for one candidate model version."""

    candidate: tuple[str, int]
    records: Records
    rows: Rows
    features: FeatureSample
    champions: set[tuple[str, int]] = field(default_factory=set)  # champion sides of candidate records
    lines_read: int = 0
    duplicates: int = 0
    bad_lines: int = 0


@dataclass(frozen=True)
class ReadOptions:
    """What to pull out of each record."""

    score_output: str = "probabilities"
    score_index: int | None = 1  # column of a 2-D score output; None for a 1-D output
    label_output: str | None = "label"  # predicted class output; None derives it from the score
    decision_threshold: float = 0.5  # predicted class = score > threshold, when label_output is None
    input_columns: dict[str, list[str]] = field(default_factory=dict)  # tensor input -> column names
    max_feature_rows: int = 1_000_000
    start_ts: float | None = None
    end_ts: float | None = None


# --------------------------------------------------------------------------------------------
# sources


def _kafka_lines(spec: str) -> Iterator[bytes]:
    from gates.kafka_source import read_topic, parse_kafka_uri

    return read_topic(**parse_kafka_uri(spec))


def open_source(spec: str | os.PathLike[str], *, include_open: bool = False,
                progress: bool = False, what: str = "records") -> Iterator[bytes]:
    """Lines of a source: a segment directory, a single JSONL file, or `kafka://host:port/topic?...`."""
    text = str(spec)
    if text.startswith("kafka://"):
        yield from _kafka_lines(text)
        return
    path = Path(text)
    if path.is_dir():
        paths = segment_paths(path, include_open=include_open)
        if not paths:
            raise ReadError(f"{path}: no segment files (<prefix>-<seq>.jsonl)"
                            + ("" if include_open else "; pass include_open to read the open segment"))
        lines: Iterable[bytes] = read_lines(path, include_open=include_open)
        total = sum(p.stat().st_size for p in paths)
    elif path.is_file():
        lines = _file_lines(path)
        total = path.stat().st_size
    else:
        raise ReadError(f"{path}: no such file or directory")
    if not progress:
        yield from lines
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, desc=f"reading {what}", leave=False) as bar:
        pending = 0
        for line in lines:
            pending += len(line) + 1
            if pending >= 1 << 20:
                bar.update(pending)
                pending = 0
            yield line
        bar.update(pending)


def _file_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            if line:
                yield line


def chunked(lines: Iterable[bytes], n: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --------------------------------------------------------------------------------------------
# records


class _Builder:
    """Accumulates one chunk at a time into numpy arrays."""

    def __init__(self, candidate: tuple[str, int], opts: ReadOptions):
        self.candidate = candidate
        self.opts = opts
        self.rec_parts: dict[str, list[np.ndarray]] = {k: [] for k in (
            "request_hash", "dedup", "ts", "kind", "rows", "champion_status", "shadow_status",
            "champion_latency_ms", "shadow_latency_ms", "champion_version")}
        self.attr_codes: dict[str, list[np.ndarray]] = {}
        self.attr_index: dict[str, dict[str, int]] = {}
        self.row_parts: dict[str, list[np.ndarray]] = {k: [] for k in (
            "record", "row", "champion_score", "shadow_score", "champion_label", "shadow_label")}
        self.n_records = 0
        self.champions: set[tuple[str, int]] = set()
        self.lines = 0
        self.bad = 0
        self.first_error: str | None = None
        # feature sample: a request is kept while (hash & mask) == 0; the mask widens when full
        self.level = 0
        self.feat_hash: list[np.ndarray] = []
        self.feat_row: list[np.ndarray] = []
        self.feat_cols: dict[str, list[np.ndarray]] = {}
        self.feat_n = 0
        self.json_types: dict[str, set[str]] = {}
        self.names_seen: set[str] = set()
        self.inputs_seen: set[str] = set()
        self.keysets: set[tuple[str, ...]] = set()
        self.tensor_shapes: dict[str, set[tuple[int, ...]]] = {}
        self.with_features = 0
        self.without_features = 0

    # one chunk of lines -> arrays
    def add(self, lines: list[bytes]) -> None:
        o = self.opts
        cand_name, cand_version = self.candidate
        req_h: list[int] = []
        dedup: list[int] = []
        ts: list[float] = []
        kind: list[int] = []
        nrows: list[int] = []
        c_st: list[int] = []
        s_st: list[int] = []
        c_lat: list[float] = []
        s_lat: list[float] = []
        c_ver: list[int] = []
        attrs: list[dict[str, str]] = []
        r_rec: list[int] = []
        r_row: list[int] = []
        r_cs: list[float] = []
        r_ss: list[float] = []
        r_cl: list[int] = []
        r_sl: list[int] = []
        f_recs: list[tuple[int, int, dict[str, Any]]] = []
        base = self.n_records
        mask = (1 << self.level) - 1
        for line in lines:
            self.lines += 1
            try:
                r = orjson.loads(line)
                if r.get("v") != 1:
                    raise ValueError(f"not a version-1 shadow record (v={r.get('v')!r})")
                t = float(r["ts"])
                if (o.start_ts is not None and t < o.start_ts) or (o.end_ts is not None and t >= o.end_ts):
                    continue
                champ = r["champion"]
                shadow = r["shadow"]
                rid = r["request_id"]
                n = int(r["rows"])
                smodel, sver = shadow["model"], int(shadow["version"])
                cmodel, cver = champ["model"], int(champ["version"])
                if smodel == cand_name and sver == cand_version:
                    k = CANDIDATE
                elif smodel == cmodel and sver == cver:
                    k = NOISE
                else:
                    k = OTHER
                h = xxh3_64_intdigest(rid.encode())
                cst = STATUS_CODES[champ["status"]]
                sst = STATUS_CODES[shadow["status"]]
                i = base + len(ts)
                if k != OTHER:
                    cs, cl = self._scores(champ, n) if cst == 0 else ([math.nan] * n, [-1] * n)
                    ss, sl = self._scores(shadow, n) if sst == 0 else ([math.nan] * n, [-1] * n)
                    r_rec.extend([i] * n)
                    r_row.extend(range(n))
                    r_cs.extend(cs)
                    r_ss.extend(ss)
                    r_cl.extend(cl)
                    r_sl.extend(sl)
                if k == CANDIDATE:
                    self.champions.add((cmodel, cver))
                    feats = r.get("features")
                    if feats:
                        self.with_features += 1
                        keys = tuple(feats)
                        if keys not in self.keysets:
                            self.keysets.add(keys)
                            self.names_seen.update(self._column_names(feats))
                            self.inputs_seen.update(keys)
                        if h & mask == 0:
                            f_recs.append((h, n, feats))
                    else:
                        self.without_features += 1
                req_h.append(h)
                dedup.append(xxh3_64_intdigest(f"{rid}\x00{smodel}\x00{sver}".encode()))
                ts.append(t)
                kind.append(k)
                nrows.append(n)
                c_st.append(cst)
                s_st.append(sst)
                c_lat.append(champ["latency_ms"])
                s_lat.append(shadow["latency_ms"])
                c_ver.append(cver)
                attrs.append(r.get("attributes") or {})
            except (ValueError, KeyError, TypeError, IndexError) as err:
                self.bad += 1
                if self.first_error is None:
                    self.first_error = f"line {self.lines}: {type(err).__name__}: {err}"
        if not ts:
            return
        p = self.rec_parts
        p["request_hash"].append(np.array(req_h, dtype=np.uint64))
        p["dedup"].append(np.array(dedup, dtype=np.uint64))
        p["ts"].append(np.array(ts, dtype=np.float64))
        p["kind"].append(np.array(kind, dtype=np.int8))
        p["rows"].append(np.array(nrows, dtype=np.int32))
        p["champion_status"].append(np.array(c_st, dtype=np.int8))
        p["shadow_status"].append(np.array(s_st, dtype=np.int8))
        p["champion_latency_ms"].append(np.array(c_lat, dtype=np.float32))
        p["shadow_latency_ms"].append(np.array(s_lat, dtype=np.float32))
        p["champion_version"].append(np.array(c_ver, dtype=np.int32))
        self._add_attributes(attrs, base)
        q = self.row_parts
        q["record"].append(np.array(r_rec, dtype=np.int64))
        q["row"].append(np.array(r_row, dtype=np.int32))
        q["champion_score"].append(np.array(r_cs, dtype=np.float64))
        q["shadow_score"].append(np.array(r_ss, dtype=np.float64))
        q["champion_label"].append(np.array(r_cl, dtype=np.int8))
        q["shadow_label"].append(np.array(r_sl, dtype=np.int8))
        self.n_records += len(ts)
        if f_recs:
            self._add_features(f_recs)

    def _scores(self, side: dict[str, Any], n: int) -> tuple[list[float], list[int]]:
        o = self.opts
        outputs = side.get("outputs") or {}
        if o.score_output not in outputs:
            raise KeyError(f"{side['model']} v{side['version']} has no output {o.score_output!r} "
                           f"(outputs: {sorted(outputs)}); set score_output in the gate config")
        raw = outputs[o.score_output]
        if o.score_index is None:
            scores = [float(v if not isinstance(v, list) else v[0]) for v in raw]
        else:
            j = o.score_index
            scores = [float(v[j]) for v in raw]
        if len(scores) != n:
            raise ValueError(f"output {o.score_output!r} has {len(scores)} rows, record says rows={n}")
        if o.label_output is not None:
            if o.label_output not in outputs:
                raise KeyError(f"{side['model']} v{side['version']} has no output {o.label_output!r}; "
                               "set label_output (or null) in the gate config")
            labels = [int(v if not isinstance(v, list) else v[0]) for v in outputs[o.label_output]]
        else:
            thr = o.decision_threshold
            labels = [int(s > thr) for s in scores]
        return scores, labels

    def _add_attributes(self, attrs: list[dict[str, str]], base: int) -> None:
        n = len(attrs)
        keys = {k for a in attrs for k in a}
        for key in keys | set(self.attr_codes):
            if key not in self.attr_codes:
                # an attribute first seen now: earlier records did not have it
                self.attr_codes[key] = [np.full(base, -1, dtype=np.int32)] if base else []
                self.attr_index[key] = {}
            index = self.attr_index[key]
            codes = np.empty(n, dtype=np.int32)
            for i, a in enumerate(attrs):
                v = a.get(key)
                if v is None:
                    codes[i] = -1
                else:
                    c = index.get(v)
                    if c is None:
                        c = index[v] = len(index)
                    codes[i] = c
            self.attr_codes[key].append(codes)

    def _column_names(self, feats: dict[str, Any]) -> list[str]:
        names = []
        for name, values in feats.items():
            first = values[0] if isinstance(values, list) and values else None
            if isinstance(first, list):
                names.extend(self._tensor_columns(name, first))
            else:
                names.append(name)
        return names

    def _tensor_columns(self, name: str, first_row: list[Any]) -> list[str]:
        cols = self.opts.input_columns.get(name)
        width = len(first_row)
        if cols is not None and len(cols) == width:
            return list(cols)
        return [f"{name}[{j}]" for j in range(width)]

    def _add_features(self, recs: list[tuple[int, int, dict[str, Any]]]) -> None:
        total = sum(n for _, n, _ in recs)
        start = self.feat_n
        # Python lists per column, converted once per chunk: per-record numpy calls would cost more
        # than the JSON parsing.
        scalar: dict[str, tuple[list[int], list[Any]]] = {}  # name -> (record start rows, values)
        tensor: dict[str, tuple[list[int], list[Any]]] = {}
        hashes = np.empty(total, dtype=np.uint64)
        rows = np.empty(total, dtype=np.int32)
        pos = 0
        for h, n, feats in recs:
            hashes[pos:pos + n] = h
            rows[pos:pos + n] = np.arange(n)
            for name, values in feats.items():
                if not isinstance(values, list) or len(values) != n:
                    self._seen_type(name, "invalid")
                    continue
                target = tensor if n and isinstance(values[0], list) else scalar
                starts, vals = target.get(name) or target.setdefault(name, ([], []))
                starts.append(pos)
                vals.extend(values)
            pos += n
        record_starts = np.cumsum([0] + [n for _, n, _ in recs])[:-1]

        def positions(starts: list[int], count: int) -> np.ndarray | slice:
            if count == total:  # present in every record: the rows are contiguous
                return slice(None)
            st = np.asarray(starts)
            lengths = np.diff(np.r_[record_starts, total])[np.searchsorted(record_starts, st)]
            return np.repeat(st, lengths) + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))

        cols: dict[str, np.ndarray] = {}
        for name, (starts, vals) in scalar.items():
            self.json_types.setdefault(name, set()).update(_JSON_TYPES.get(t, t.__name__) for t in set(map(type, vals)))
            arr = _to_float(vals)
            if arr is not None and arr.ndim == 1:  # strings stay out of the numeric sample
                col = cols[name] = np.full(total, np.nan)
                col[positions(starts, len(vals))] = arr
        for name, (starts, vals) in tensor.items():
            first = vals[0]
            self.tensor_shapes.setdefault(name, set()).update({_inner_shape(v) for v in vals[:1000]})
            cnames = self._tensor_columns(name, first)
            arr = _to_float(vals)
            if arr is None or arr.ndim != 2 or arr.shape[1] != len(cnames):
                self._seen_type(name, "ragged")
                continue
            head = vals[:1000]  # element types from the first rows of each chunk
            for j, cname in enumerate(cnames):
                kinds = {_JSON_TYPES.get(t, t.__name__) for t in {type(row[j]) for row in head}}
                self.json_types.setdefault(cname, set()).update(kinds)
                self.json_types.setdefault(name, set()).update(kinds)  # the tensor's, for the schema gate
                col = cols[cname] = np.full(total, np.nan)
                col[positions(starts, len(vals))] = arr[:, j]
        for name, c in cols.items():
            if name not in self.feat_cols:
                self.feat_cols[name] = [np.full(start, np.nan)] if start else []
            self.feat_cols[name].append(c)
        for name, parts in self.feat_cols.items():
            if name not in cols:
                parts.append(np.full(total, np.nan))
        self.feat_hash.append(hashes)
        self.feat_row.append(rows)
        self.feat_n += total
        while self.feat_n > self.opts.max_feature_rows:
            self._thin()

    def _seen_type(self, name: str, t: str) -> None:
        self.json_types.setdefault(name, set()).add(t)

    def _thin(self) -> None:
        """Halve the feature sample: keep requests whose hash has one more low zero bit."""
        self.level += 1
        mask = np.uint64((1 << self.level) - 1)
        h = np.concatenate(self.feat_hash)
        keep = (h & mask) == 0
        self.feat_hash = [h[keep]]
        self.feat_row = [np.concatenate(self.feat_row)[keep]]
        for name, parts in self.feat_cols.items():
            self.feat_cols[name] = [np.concatenate(parts)[keep]]
        self.feat_n = int(np.count_nonzero(keep))

    def finish(self) -> ShadowFrame:
        p = {k: (np.concatenate(v) if v else np.empty(0)) for k, v in self.rec_parts.items()}
        q = {k: (np.concatenate(v) if v else np.empty(0)) for k, v in self.row_parts.items()}
        n = self.n_records
        attributes = {k: Categorical(np.concatenate(v) if v else np.empty(0, np.int32), list(self.attr_index[k]))
                      for k, v in self.attr_codes.items()}
        # At-least-once delivery repeats records: keep the first of each (request, shadow, version).
        _, first = np.unique(p["dedup"].astype(np.uint64), return_index=True)
        duplicates = n - first.size
        if duplicates:
            keep = np.zeros(n, dtype=bool)
            keep[first] = True
            new_index = np.cumsum(keep) - 1
            row_keep = keep[q["record"].astype(np.int64)]
            q = {k: v[row_keep] for k, v in q.items()}
            q["record"] = new_index[q["record"]]
            p = {k: v[keep] for k, v in p.items()}
            attributes = {k: Categorical(c.codes[keep], c.categories) for k, c in attributes.items()}
        records = Records(
            request_hash=p["request_hash"].astype(np.uint64), ts=p["ts"].astype(np.float64),
            kind=p["kind"].astype(np.int8), rows=p["rows"].astype(np.int32),
            champion_status=p["champion_status"].astype(np.int8), shadow_status=p["shadow_status"].astype(np.int8),
            champion_latency_ms=p["champion_latency_ms"].astype(np.float32),
            shadow_latency_ms=p["shadow_latency_ms"].astype(np.float32),
            champion_version=p["champion_version"].astype(np.int32), attributes=attributes)
        rows = Rows(record=q["record"].astype(np.int64), row=q["row"].astype(np.int32),
                    champion_score=q["champion_score"].astype(np.float64),
                    shadow_score=q["shadow_score"].astype(np.float64),
                    champion_label=q["champion_label"].astype(np.int8),
                    shadow_label=q["shadow_label"].astype(np.int8))
        features = self._finish_features()
        return ShadowFrame(candidate=self.candidate, records=records, rows=rows, features=features,
                           champions=self.champions, lines_read=self.lines, duplicates=int(duplicates),
                           bad_lines=self.bad)

    def _finish_features(self) -> FeatureSample:
        cols = {k: np.concatenate(v) for k, v in self.feat_cols.items()}
        if self.feat_hash:
            h = np.concatenate(self.feat_hash)
            r = np.concatenate(self.feat_row)
            _, first = np.unique(join_key(h, r), return_index=True)
            if first.size != h.size:  # duplicated records in the sample
                first.sort()
                cols = {k: v[first] for k, v in cols.items()}
        return FeatureSample(columns=cols, json_types=self.json_types, names_seen=self.names_seen,
                             inputs_seen=self.inputs_seen,
                             tensor_shapes=self.tensor_shapes, sample_share=0.5 ** self.level,
                             records_with_features=self.with_features,
                             records_without_features=self.without_features)


_JSON_TYPES = {type(None): "null", bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "object"}


def _inner_shape(first_row: list[Any]) -> tuple[int, ...]:
    shape = []
    v: Any = first_row
    while isinstance(v, list):
        shape.append(len(v))
        v = v[0] if v else None
    return tuple(shape)


def _to_float(values: list[Any]) -> np.ndarray | None:
    try:
        return np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError):
        return None  # strings, ragged lists: not numeric, schema still records the JSON type


def read_shadow_log(source: str | os.PathLike[str] | Iterable[bytes], candidate: tuple[str, int], *,
                    options: ReadOptions | None = None, include_open: bool = False,
                    progress: bool = False, max_bad_fraction: float = 0.001) -> ShadowFrame:
    """Read a shadow log into a `ShadowFrame` for `candidate` = (model name, version).

    `source` is a path or `kafka://` URI (see `open_source`) or any iterable of record lines.
    Lines that are not valid records are counted; more than `max_bad_fraction` of them raise
    `ReadError` naming the first bad line, since a mostly unreadable log cannot be gated.
    """
    opts = options or ReadOptions()
    lines = source if not isinstance(source, (str, os.PathLike)) else open_source(
        source, include_open=include_open, progress=progress, what="shadow records")
    b = _Builder((candidate[0], int(candidate[1])), opts)
    for chunk in chunked(lines, CHUNK_RECORDS):
        b.add(chunk)
    if b.lines and b.bad > max_bad_fraction * b.lines:
        raise ReadError(f"{source if isinstance(source, (str, os.PathLike)) else 'log'}: {b.bad} of {b.lines} "
                        f"lines are not usable shadow records; first: {b.first_error}")
    return b.finish()
