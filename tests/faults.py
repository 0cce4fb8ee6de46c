"""Python models that misbehave on purpose, loaded through the `python` backend.

A real model that reliably raises or hangs cannot be built from ONNX, so these are the
"faults you cannot cause for real" the project rules allow. Each declares the same inputs and
outputs as the demo credit model, so the proxy validates requests against them the same way.
"""

from __future__ import annotations

import time

import numpy as np

_INPUTS = [{"name": "features", "datatype": "FP32", "shape": [-1, 10]}]
_OUTPUTS = [{"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}]


class RaisingModel:
    inputs, outputs = _INPUTS, _OUTPUTS

    def predict(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise RuntimeError("shadow model exploded")


class SleepyModel:
    """Sleeps `seconds` per call (past any sensible timeout), then answers."""

    inputs, outputs = _INPUTS, _OUTPUTS

    def __init__(self, seconds: float = 5.0):
        self.seconds = seconds

    def predict(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(self.seconds)
        n = feeds["features"].shape[0]
        return {"label": np.zeros(n, np.int64), "probabilities": np.tile(np.float32([1, 0]), (n, 1))}
