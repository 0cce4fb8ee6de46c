"""Model backends: where a model actually runs. See `base.Backend` for the contract."""

from proxy.backends.base import Backend, BackendError, build_backend

__all__ = ["Backend", "BackendError", "build_backend"]
