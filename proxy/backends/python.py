"""A model written in Python: `module:Class(**kwargs)` with `predict(feeds) -> outputs`.

Useful for rules-based champions and for shadows whose faults tests must cause on purpose.
The class may declare `inputs` / `outputs` as lists of dicts (`name`, `datatype`, `shape`).
"""

from __future__ import annotations

import pkgutil
from typing import Any

from proxy.backends.base import Backend, BackendError, Feeds, Outputs
from proxy.tensors import TensorSpec


class PythonBackend(Backend):
    def __init__(self, name: str, version: int, target: str, kwargs: dict[str, Any]):
        super().__init__(name, version)
        try:
            obj: Any = pkgutil.resolve_name(target)
        except (ImportError, AttributeError, ValueError) as err:
            raise BackendError(f"cannot import model {name} v{version} from {target!r}: {err}") from err
        self._model = obj(**kwargs)
        self.inputs = tuple(TensorSpec(d["name"], d["datatype"], tuple(d["shape"])) for d in getattr(self._model, "inputs", ()))
        self.outputs = tuple(TensorSpec(d["name"], d["datatype"], tuple(d["shape"])) for d in getattr(self._model, "outputs", ()))
        self.batchable = bool(getattr(self._model, "batchable", False))

    def predict(self, feeds: Feeds) -> Outputs:
        try:
            return dict(self._model.predict(feeds))
        except BackendError:
            raise
        except Exception as err:
            raise BackendError(f"model {self.name} v{self.version} raised {type(err).__name__}: {err}") from err
