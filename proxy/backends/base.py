"""The backend contract and the factory that builds one from its config."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from proxy.tensors import TensorSpec

if TYPE_CHECKING:
    from proxy.config import ModelConfig

Feeds = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]


class BackendError(Exception):
    """A model failed to produce an answer. `status` is the HTTP status the proxy answers with
    when this happens to a champion; `upstream` names the remote server, if any."""

    status = 500

    def __init__(self, message: str, *, status: int | None = None, upstream: str | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status
        self.upstream = upstream


class Backend:
    """One pinned model version, loaded and ready to run.

    In-process backends (`sync = True`) implement `predict`, which the champion path calls
    directly on the event loop: for small models a thread hop costs more than the model.
    Remote backends implement `infer`. Everyone can be awaited through `infer`.
    """

    sync: bool = True
    batchable: bool = True  # rows of several requests may be concatenated into one call
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()

    def __init__(self, name: str, version: int):
        self.name = name
        self.version = version

    def predict(self, feeds: Feeds) -> Outputs:
        raise NotImplementedError

    async def infer(self, feeds: Feeds, *, headers: Any = None, request_id: str | None = None) -> Outputs:
        """`headers` (the client's, as an ASGI header list) and `request_id` are for backends that
        forward them (tracing); in-process backends ignore them."""
        return self.predict(feeds)

    async def start(self) -> None:
        """Open connections, warm up. Called once before serving."""

    async def close(self) -> None:
        """Release resources. Idempotent."""

    def ready(self) -> bool:
        return True

    def metadata(self) -> dict[str, Any]:
        return {
            "inputs": [t.as_json() for t in self.inputs],
            "outputs": [t.as_json() for t in self.outputs],
        }


async def run_in_thread(fn: Any, *args: Any) -> Any:
    """Run a blocking call in the loop's default executor."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def build_backend(cfg: "ModelConfig") -> Backend:
    """Construct (but do not start) the backend a model config describes."""
    b = cfg.backend
    if b.type == "onnx":
        from proxy.backends.onnx import OnnxBackend

        return OnnxBackend(cfg.name, cfg.version, b.path, intra_op_threads=b.intra_op_threads)
    if b.type == "python":
        from proxy.backends.python import PythonBackend

        return PythonBackend(cfg.name, cfg.version, b.target, b.kwargs)
    if b.type == "http":
        from proxy.backends.http import HttpBackend  # issue 3

        return HttpBackend(cfg.name, cfg.version, b, feature_names=cfg.feature_names)
    raise ValueError(f"unknown backend type {b.type!r}")
