"""Request decoding and response encoding for the two protocols clients speak.

Decoding validates against the serving model's input metadata and raises `ProxyError(400, ...)`
with a message that names the input and what was wrong. Encoding uses orjson's native numpy
serialisation (no `.tolist()` round trip).
"""

from __future__ import annotations

from math import prod
from typing import Any, Sequence

import numpy as np
import orjson

from proxy.errors import ProxyError
from proxy.tensors import OIP_TO_NUMPY, TensorSpec, oip_datatype

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
Feeds = dict[str, np.ndarray]


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise ProxyError(400, f"malformed JSON body: {err}") from None


def _check_shape(spec: TensorSpec, shape: tuple[int, ...]) -> None:
    if spec.shape and (len(shape) != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, shape))):
        raise ProxyError(400, f"input {spec.name!r}: shape {list(shape)} does not match the model's "
                              f"{list(spec.shape)} (-1 = any)")


def _to_array(name: str, data: Any, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as err:
        raise ProxyError(400, f"input {name!r}: data is not valid {dtype.name}: {err}") from None
    if arr.size != prod(shape):
        raise ProxyError(400, f"input {name!r}: shape {list(shape)} needs {prod(shape)} values, "
                              f"data has {arr.size}")
    return arr.reshape(shape)


# ---------------------------------------------------------------- Open Inference Protocol (V2)

def decode_oip(req: Any, specs: Sequence[TensorSpec]) -> Feeds:
    """OIP `inputs` -> feeds, checked against the model's inputs (names, datatypes, shapes)."""
    if not isinstance(req, dict):
        raise ProxyError(400, "request body must be a JSON object with an 'inputs' list")
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProxyError(400, "request needs a non-empty 'inputs' list")
    by_name = {s.name: s for s in specs}
    permissive = not specs  # a backend without metadata: take the client's word for it
    feeds: Feeds = {}
    for i, inp in enumerate(inputs):
        if not isinstance(inp, dict):
            raise ProxyError(400, f"inputs[{i}] must be an object with name, shape, datatype, data")
        name, shape, datatype, data = inp.get("name"), inp.get("shape"), inp.get("datatype"), inp.get("data")
        if not isinstance(name, str):
            raise ProxyError(400, f"inputs[{i}]: 'name' must be a string")
        params = inp.get("parameters")
        if isinstance(params, dict) and "binary_data_size" in params:
            raise ProxyError(400, f"input {name!r}: the binary tensor extension is not supported; "
                                  "send JSON 'data' (tritonclient: binary_data=False)")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ProxyError(400, f"input {name!r}: 'shape' must be a list of non-negative integers")
        if datatype not in OIP_TO_NUMPY:
            raise ProxyError(400, f"input {name!r}: unknown datatype {datatype!r} "
                                  f"(one of {', '.join(OIP_TO_NUMPY)})")
        if data is None:
            raise ProxyError(400, f"input {name!r}: 'data' is missing")
        spec = by_name.get(name)
        if spec is None:
            if not permissive:
                raise ProxyError(400, f"unknown input {name!r}; the model takes {sorted(by_name)}")
            spec = TensorSpec(name, datatype, ())
        if datatype != spec.datatype:
            raise ProxyError(400, f"input {name!r}: datatype {datatype} does not match the model's {spec.datatype}")
        shape_t = tuple(shape)
        _check_shape(spec, shape_t)
        feeds[name] = _to_array(name, data, spec.dtype, shape_t)
    missing = [s.name for s in specs if s.name not in feeds]
    if missing:
        raise ProxyError(400, f"missing input(s) {missing}; the model takes {[s.name for s in specs]}")
    return feeds


def requested_outputs(req: dict[str, Any], available: Sequence[str]) -> list[str] | None:
    """Output names the client asked for (None = all), validated."""
    wanted = req.get("outputs")
    if wanted is None:
        return None
    if not isinstance(wanted, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in wanted):
        raise ProxyError(400, "'outputs' must be a list of objects with a 'name'")
    names = [o["name"] for o in wanted]
    unknown = [n for n in names if n not in available] if available else []
    if unknown:
        raise ProxyError(400, f"unknown output(s) {unknown}; the model has {list(available)}")
    return names


def encode_oip(model_name: str, model_version: str, req_id: Any, outputs: dict[str, np.ndarray],
               only: list[str] | None) -> bytes:
    body: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if req_id is not None:
        body["id"] = req_id
    body["outputs"] = [
        {"name": name, "shape": arr.shape, "datatype": oip_datatype(arr), "data": arr.reshape(-1)}
        for name, arr in outputs.items() if only is None or name in only
    ]
    return orjson.dumps(body, option=_NUMPY)


# ---------------------------------------------------------------- MLflow scoring (/invocations)

_MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def decode_mlflow(req: Any, specs: Sequence[TensorSpec], feature_names: Sequence[str] | None) -> Feeds:
    """MLflow's four JSON input forms -> feeds for the model's inputs."""
    if not isinstance(req, dict):
        raise ProxyError(400, "the input must be a JSON object")
    present = [k for k in _MLFLOW_KEYS if k in req]
    if len(present) != 1:
        raise ProxyError(400, "the input must be a JSON dictionary with exactly one of the input fields "
                              f"{set(_MLFLOW_KEYS)}; got {sorted(k for k in req if k != 'params') or 'none'}")
    key = present[0]
    value = req[key]
    if key in ("dataframe_split", "dataframe_records"):
        return _decode_frame(key, value, specs, feature_names)
    # instances / inputs: a list of rows (single-input model) or {input_name: data}
    if isinstance(value, dict):
        by_name = {s.name: s for s in specs}
        unknown = [n for n in value if n not in by_name]
        if unknown:
            raise ProxyError(400, f"unknown input(s) {unknown}; the model takes {sorted(by_name)}")
        missing = [n for n in by_name if n not in value]
        if missing:
            raise ProxyError(400, f"missing input(s) {missing}")
        return {n: _tensor_from_nested(by_name[n], value[n]) for n in by_name}
    if len(specs) != 1:
        raise ProxyError(400, f"'{key}' as a list needs a single-input model; this one takes "
                              f"{[s.name for s in specs]}: send {{name: data}}")
    return {specs[0].name: _tensor_from_nested(specs[0], value)}


def _tensor_from_nested(spec: TensorSpec, data: Any) -> np.ndarray:
    try:
        arr = np.asarray(data, dtype=spec.dtype)
    except (ValueError, TypeError, OverflowError) as err:
        raise ProxyError(400, f"input {spec.name!r}: data is not a rectangular {spec.dtype.name} array: {err}") from None
    _check_shape(spec, arr.shape)
    return arr


def _decode_frame(key: str, value: Any, specs: Sequence[TensorSpec],
                  feature_names: Sequence[str] | None) -> Feeds:
    if len(specs) == 1 and len(specs[0].shape) == 2:
        spec = specs[0]
        width = spec.shape[1]
        names = list(feature_names) if feature_names else None
        if key == "dataframe_split":
            if not isinstance(value, dict) or not isinstance(value.get("data"), list):
                raise ProxyError(400, "'dataframe_split' needs {'columns': [...], 'data': [[...], ...]}")
            rows = value["data"]
            columns = value.get("columns")
            if names and columns is not None:
                if sorted(columns) != sorted(names):
                    raise ProxyError(400, f"dataframe columns {columns} do not match the model's features {names}")
                if columns != names:  # reorder to the model's column order
                    order = [columns.index(n) for n in names]
                    rows = [[r[j] for j in order] for r in rows]
        else:
            if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
                raise ProxyError(400, "'dataframe_records' needs a list of {column: value} objects")
            if not names:
                raise ProxyError(400, "'dataframe_records' needs the model's feature_names in the deployment config")
            try:
                rows = [[r[n] for n in names] for r in value]
            except KeyError as err:
                raise ProxyError(400, f"dataframe_records: missing column {err.args[0]!r}") from None
        arr = _tensor_from_nested(spec, rows)
        if arr.ndim != 2 or (width != -1 and arr.shape[1] != width):
            raise ProxyError(400, f"dataframe has shape {list(arr.shape)}, the model expects [-1, {width}]")
        return {spec.name: arr}
    # One named input per column: each column is a 1-D tensor (or [N, 1]).
    if key == "dataframe_split":
        if not isinstance(value, dict):
            raise ProxyError(400, "'dataframe_split' needs {'columns': [...], 'data': [[...], ...]}")
        columns, rows = value.get("columns") or [], value.get("data") or []
        cols = {c: [r[j] for r in rows] for j, c in enumerate(columns)}
    else:
        cols = {}
        for r in value:
            for c, v in r.items():
                cols.setdefault(c, []).append(v)
    return decode_mlflow({"inputs": cols}, specs, None)


def encode_mlflow(outputs: dict[str, np.ndarray]) -> bytes:
    """`{"predictions": list}` for one output, `{"predictions": {name: list}}` for several."""
    if len(outputs) == 1:
        (only,) = outputs.values()
        return orjson.dumps({"predictions": only}, option=_NUMPY)
    return orjson.dumps({"predictions": outputs}, option=_NUMPY)
