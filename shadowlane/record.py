"""The shadow-record format, defined once for the proxy (writer) and the gates (reader).

One record per mirrored request and shadow model; see docs/shadow-log.md for every field.
Records are JSON objects (orjson), one per line in segment files, one per message on Kafka.
`schemas/shadow-record.v1.json` is the JSON Schema a consumer in any language can validate with.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Iterable, Iterator, Literal, TypedDict

import orjson

RECORD_VERSION = 1
Status = Literal["ok", "error", "timeout"]


class Side(TypedDict):
    """One model's half of a pair: who answered, how fast, and what."""

    model: str  # registry name
    version: int  # pinned registry version (never an alias)
    variant: str  # "champion", a challenger name, or a shadow name
    status: Status
    latency_ms: float
    outputs: dict[str, Any] | None  # output name -> nested list (row-major), None unless status == "ok"
    error: str | None


class ShadowRecord(TypedDict):
    v: int  # RECORD_VERSION
    ts: float  # unix seconds, when the champion's answer was ready
    request_id: str
    unit_id: str | None
    endpoint: str  # served model name the client asked for
    protocol: Literal["oip", "mlflow"]
    rows: int  # batch size of the request
    champion: Side  # the variant that actually answered the client
    shadow: Side
    features_hash: str  # "xxh3:<16 hex>" over the canonical feature bytes (docs/shadow-log.md)
    features: dict[str, Any] | None  # column or input name -> list, when record_features is on
    attributes: dict[str, str]  # segment attributes (configured headers), for per-segment gates


def encode(record: ShadowRecord) -> bytes:
    """One record as compact JSON bytes (no trailing newline). numpy arrays are serialised natively."""
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)


def decode(line: bytes | str) -> ShadowRecord:
    """Parse one record; raises ValueError for JSON that is not a version this code understands."""
    obj = orjson.loads(line)
    if not isinstance(obj, dict) or obj.get("v") != RECORD_VERSION:
        raise ValueError(f"not a shadow record of version {RECORD_VERSION}: v={obj.get('v') if isinstance(obj, dict) else obj!r}")
    return obj  # type: ignore[return-value]


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of a version-1 record."""
    text = resources.files("shadowlane").joinpath("schemas/shadow-record.v1.json").read_bytes()
    return orjson.loads(text)


# -- decoupled mode: the request record (proxy -> requests topic -> shadow-worker) -------------

class Tensor(TypedDict):
    """One model input, exactly as the champion was fed: OIP datatype, shape, row-major data."""

    datatype: str  # OIP name: "FP32", "INT64", "BYTES", ...
    shape: list[int]
    data: list[Any]  # flat, row-major


class RequestRecord(TypedDict):
    """What the proxy publishes in decoupled mode, one per mirrored request (not per shadow).

    A shadow worker runs the listed shadows on `inputs` and writes one ShadowRecord each, copying
    every other field, so decoupled and in-process modes write identical shadow records.
    """

    v: int  # RECORD_VERSION
    ts: float
    request_id: str
    unit_id: str | None
    endpoint: str
    protocol: Literal["oip", "mlflow"]
    rows: int
    champion: Side
    shadows: list[str]  # model keys (deployment config `models:`) this request was sampled for
    inputs: dict[str, Tensor]  # model input name -> the champion's feed
    features_hash: str
    features: dict[str, Any] | None
    attributes: dict[str, str]


def encode_request(record: RequestRecord) -> bytes:
    """One request record as compact JSON bytes; numpy arrays are serialised natively."""
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_request(data: bytes | str) -> RequestRecord:
    """Parse one request record; ValueError if it is not one of a version this code understands."""
    obj = orjson.loads(data)
    if not isinstance(obj, dict) or obj.get("v") != RECORD_VERSION or "inputs" not in obj:
        raise ValueError(f"not a request record of version {RECORD_VERSION}")
    return obj  # type: ignore[return-value]


def request_json_schema() -> dict[str, Any]:
    """The published JSON Schema of a version-1 request record."""
    text = resources.files("shadowlane").joinpath("schemas/request-record.v1.json").read_bytes()
    return orjson.loads(text)


def dedup_key(record: ShadowRecord) -> tuple[str, str, int]:
    """Identity of a shadow record: delivery is at-least-once (Kafka spill replay, shadow-worker
    redelivery), so readers keep the first record per (request id, shadow model, version)."""
    shadow = record["shadow"]
    return record["request_id"], shadow["model"], shadow["version"]


def dedup(records: Iterable[ShadowRecord]) -> Iterator[ShadowRecord]:
    """Records in order, each identity (`dedup_key`) once."""
    seen: set[tuple[str, str, int]] = set()
    for r in records:
        k = dedup_key(r)
        if k not in seen:
            seen.add(k)
            yield r
