"""Tensor metadata and the OIP datatype <-> numpy mapping shared by all backends and codecs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# OIP (KServe V2) datatype names -> numpy dtypes. FP16 and BYTES travel as JSON too.
OIP_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8), "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
NUMPY_TO_OIP: dict[np.dtype, str] = {v: k for k, v in OIP_TO_NUMPY.items()}
# Strings from ONNX come back as object arrays of str.
NUMPY_TO_OIP[np.dtype(object)] = "BYTES"

ONNX_TO_OIP = {
    "tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
    "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(int16)": "INT16", "tensor(int8)": "INT8",
    "tensor(uint64)": "UINT64", "tensor(uint32)": "UINT32", "tensor(uint16)": "UINT16", "tensor(uint8)": "UINT8",
    "tensor(bool)": "BOOL", "tensor(string)": "BYTES",
}


@dataclass(frozen=True)
class TensorSpec:
    """Name, OIP datatype and shape of a model input or output; -1 marks a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return OIP_TO_NUMPY[self.datatype]

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def oip_datatype(arr: np.ndarray) -> str:
    dt = arr.dtype
    if dt.kind in ("U", "S"):
        return "BYTES"
    return NUMPY_TO_OIP.get(dt, "BYTES")
