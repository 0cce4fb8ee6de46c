"""Errors the proxy answers with, rendered in the protocol the client spoke.

OIP (KServe V2) clients get `{"error": "..."}`; MLflow scoring clients get
`{"error_code": "...", "message": "..."}`, as `mlflow models serve` answers.
"""

from __future__ import annotations

import orjson

_MLFLOW_CODES = {
    400: "BAD_REQUEST", 404: "RESOURCE_DOES_NOT_EXIST", 405: "BAD_REQUEST", 413: "BAD_REQUEST",
    415: "BAD_REQUEST", 500: "INTERNAL_ERROR", 502: "TEMPORARILY_UNAVAILABLE",
    503: "TEMPORARILY_UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}


class ProxyError(Exception):
    """A request the proxy cannot serve; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def oip_error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def mlflow_error_body(status: int, message: str) -> bytes:
    return orjson.dumps({"error_code": _MLFLOW_CODES.get(status, "INTERNAL_ERROR"), "message": message})
