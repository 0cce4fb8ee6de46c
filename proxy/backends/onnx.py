"""In-process ONNX models through onnxruntime."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from proxy.backends.base import Backend, BackendError, Feeds, Outputs
from proxy.tensors import ONNX_TO_OIP, TensorSpec


def _spec(arg: ort.NodeArg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else -1 for d in (arg.shape or ()))
    return TensorSpec(arg.name, ONNX_TO_OIP.get(arg.type, "BYTES"), shape)


class OnnxBackend(Backend):
    sync = True

    def __init__(self, name: str, version: int, path: Path, *, intra_op_threads: int = 1):
        super().__init__(name, version)
        opts = ort.SessionOptions()
        # One thread per session: the proxy serves many small requests concurrently, and
        # onnxruntime's spinning thread pool would steal the core the event loop runs on.
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises several unrelated types for a bad file
            raise BackendError(f"cannot load ONNX model {name} v{version} from {path}: {err}") from err
        self.inputs = tuple(_spec(a) for a in self._session.get_inputs())
        self.outputs = tuple(_spec(a) for a in self._session.get_outputs())
        self._output_names = [o.name for o in self.outputs]
        # Rows of several requests can be stacked only when every input has a free batch dim.
        self.batchable = all(len(t.shape) >= 1 and t.shape[0] == -1 for t in self.inputs)
        self._run = self._session.run

    def predict(self, feeds: Feeds) -> Outputs:
        try:
            results = self._run(self._output_names, feeds)
        except Exception as err:  # InvalidArgument, Fail, RuntimeException...
            raise BackendError(f"model {self.name} v{self.version} failed: {err}", status=400) from err
        return dict(zip(self._output_names, results))
