"""Bodies the proxy sends to and reads from upstream model servers.

Two wire protocols: the Open Inference Protocol (KServe V2: MLServer, Triton, KServe) and MLflow's
scoring protocol (`mlflow models serve`). Inside the proxy a request is always a dict of named
numpy arrays; these functions turn it into an upstream body and the answer back into arrays.
What survives the trip is listed in docs/upstreams.md.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import orjson

from proxy.tensors import OIP_TO_NUMPY, TensorSpec, oip_datatype


class UpstreamProtocolError(ValueError):
    """An upstream answered 200 with a body that is not what its protocol promises."""


_NUMPY_OK = frozenset("biuf")  # dtype kinds orjson serialises natively from numpy


def _data(arr: np.ndarray) -> Any:
    """A row-major JSON-able view of `arr`: orjson writes numeric numpy arrays itself (fast);
    strings and bytes go through Python lists."""
    if arr.dtype.kind in _NUMPY_OK:
        return np.ascontiguousarray(arr)
    return [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in arr.ravel().tolist()]


def _dumps(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


# ── Open Inference Protocol ──────────────────────────────────────────────────────────────────

def encode_oip_request(feeds: Mapping[str, np.ndarray], *, request_id: str | None = None,
                       outputs: Sequence[str] | None = None) -> bytes:
    """`POST /v2/models/{m}/infer` body; data is flat row-major, JSON only (no binary extension)."""
    doc: dict[str, Any] = {}
    if request_id:
        doc["id"] = request_id
    doc["inputs"] = [
        {"name": name, "shape": list(arr.shape), "datatype": oip_datatype(arr), "data": _data(arr.reshape(-1))}
        for name, arr in feeds.items()
    ]
    if outputs:
        doc["outputs"] = [{"name": n} for n in outputs]
    return _dumps(doc)


def _tensor_from_oip(t: Mapping[str, Any]) -> np.ndarray:
    try:
        name, datatype, shape, data = t["name"], t["datatype"], t["shape"], t["data"]
    except (KeyError, TypeError) as err:
        raise UpstreamProtocolError(f"OIP output lacks {err}") from None
    dtype = OIP_TO_NUMPY.get(datatype)
    if dtype is None:
        raise UpstreamProtocolError(f"OIP output {name!r} has unknown datatype {datatype!r}")
    if (t.get("parameters") or {}).get("binary_data_size") is not None:
        raise UpstreamProtocolError(f"OIP output {name!r} came in the binary extension, which was not asked for")
    try:
        arr = np.asarray(data, dtype=dtype)
        return arr.reshape(shape)
    except (ValueError, TypeError) as err:
        raise UpstreamProtocolError(f"OIP output {name!r}: data does not fit {datatype} {shape}: {err}") from None


def decode_oip_response(body: bytes) -> dict[str, np.ndarray]:
    """Arrays from an OIP infer answer, keyed by output name."""
    doc = _loads(body, "OIP infer")
    outs = doc.get("outputs") if isinstance(doc, dict) else None
    if not isinstance(outs, list):
        raise UpstreamProtocolError("OIP infer answer has no 'outputs' list")
    if not all(isinstance(t, dict) for t in outs):
        raise UpstreamProtocolError("OIP infer answer: every output must be an object")
    return {t.get("name"): _tensor_from_oip(t) for t in outs}


def decode_oip_metadata(body: bytes) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """(inputs, outputs) from `GET /v2/models/{m}[/versions/{v}]`."""
    doc = _loads(body, "OIP model metadata")
    if not isinstance(doc, dict):
        raise UpstreamProtocolError(f"OIP model metadata is not an object (got {type(doc).__name__})")
    try:
        return (specs_from_json(doc.get("inputs") or []), specs_from_json(doc.get("outputs") or []))
    except (KeyError, TypeError, ValueError) as err:
        raise UpstreamProtocolError(f"OIP model metadata is malformed: {err}") from None


def specs_from_json(items: Sequence[Mapping[str, Any]]) -> tuple[TensorSpec, ...]:
    """TensorSpecs from OIP-style `[{"name", "datatype", "shape"}]` (metadata or config override)."""
    specs = []
    for d in items:
        if d["datatype"] not in OIP_TO_NUMPY:
            raise ValueError(f"tensor {d['name']!r}: unknown datatype {d['datatype']!r}")
        specs.append(TensorSpec(str(d["name"]), str(d["datatype"]), tuple(int(x) for x in d["shape"])))
    return tuple(specs)


# ── MLflow scoring protocol ──────────────────────────────────────────────────────────────────

def encode_mlflow_request(feeds: Mapping[str, np.ndarray], *, columns: Sequence[str] | None = None) -> bytes:
    """`POST /invocations` body.

    One 2-D input with known column names → `dataframe_split` (works for column and tensor
    signatures alike); otherwise `inputs`: the bare array for one input, a dict for several.
    """
    if len(feeds) == 1:
        (arr,) = feeds.values()
        if columns and arr.ndim == 2 and arr.shape[1] == len(columns):
            return _dumps({"dataframe_split": {"columns": list(columns), "data": _data(arr)}})
        return _dumps({"inputs": _nested(arr)})
    return _dumps({"inputs": {n: _nested(a) for n, a in feeds.items()}})


def _nested(arr: np.ndarray) -> Any:
    """Like `_data` but keeps the shape (MLflow has no separate shape field)."""
    return np.ascontiguousarray(arr) if arr.dtype.kind in _NUMPY_OK else arr.tolist()


def decode_mlflow_response(body: bytes, outputs: Sequence[TensorSpec] = ()) -> dict[str, np.ndarray]:
    """Arrays from an MLflow answer, keyed by output name.

    Multi-output models answer `{"predictions": {name: [...]}}`; single-output ones a list, named
    after the known output (else `predictions`); DataFrame outputs come as records and become one
    array per column. Known output specs fix the dtype (JSON has only "number").
    """
    doc = _loads(body, "MLflow /invocations")
    preds = doc.get("predictions", doc) if isinstance(doc, dict) else doc
    by_name = {s.name: s for s in outputs}
    if isinstance(preds, dict):
        raw = preds
    elif isinstance(preds, list) and preds and all(isinstance(r, dict) for r in preds):
        cols = list(preds[0])
        raw = {c: [r.get(c) for r in preds] for c in cols}
    elif isinstance(preds, list):
        raw = {outputs[0].name if len(outputs) == 1 else "predictions": preds}
    else:
        raise UpstreamProtocolError(f"MLflow answer has no predictions list or dict (got {type(preds).__name__})")
    result = {}
    for name, values in raw.items():
        spec = by_name.get(name)
        try:
            arr = np.asarray(values, dtype=spec.dtype if spec else None)
        except (ValueError, TypeError) as err:
            raise UpstreamProtocolError(f"MLflow output {name!r} is not a rectangular array: {err}") from None
        if arr.dtype.kind == "U":
            arr = arr.astype(object)  # strings travel as BYTES, like ONNX's
        result[name] = arr
    return result


def infer_specs(arrays: Mapping[str, np.ndarray]) -> tuple[TensorSpec, ...]:
    """Specs learnt from one answer (MLflow serves no metadata): the batch dimension is free."""
    return tuple(TensorSpec(n, oip_datatype(a), (-1, *a.shape[1:]) if a.ndim else ()) for n, a in arrays.items())


def error_message(body: bytes, limit: int = 500) -> str:
    """The human part of an upstream error body: OIP `error`, MLflow `message`, else the text."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        for key in ("error", "message", "detail"):
            if isinstance(doc.get(key), str):
                return doc[key][:limit]
    text = body.decode("utf-8", "replace").strip()
    return (text[:limit] or "<empty body>")


def _loads(body: bytes, what: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise UpstreamProtocolError(f"{what} answer is not JSON: {err}") from None
