"""Request bodies for the benchmarks: credit applications from `synth_applicants`, many user ids.

Everything is precomputed once so the load generators only replay bytes. The same list feeds the
wrk Lua script (saturation) and the open-loop generator (fixed rates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

from shadowlane.demo_models import CREDIT_FEATURES, synth_applicants


@dataclass(frozen=True)
class BenchRequest:
    """One HTTP request to replay: method, path, headers and body."""

    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def raw(self, host: str) -> bytes:
        """The request as HTTP/1.1 bytes on a keep-alive connection."""
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
                 f"Content-Length: {len(self.body)}"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def oip_body(row: np.ndarray, request_id: str | None = None) -> bytes:
    """An OIP (KServe V2) infer request with one row of the credit model's `features` input."""
    body: dict[str, object] = {"inputs": [{"name": "features", "shape": [1, len(row)], "datatype": "FP32",
                                           "data": [round(float(v), 4) for v in row]}]}
    if request_id is not None:
        body["id"] = request_id
    return orjson.dumps(body)


def mlflow_body(row: np.ndarray) -> bytes:
    """An MLflow scoring request (`dataframe_split`) with named columns."""
    return orjson.dumps({"dataframe_split": {"columns": list(CREDIT_FEATURES),
                                             "data": [[round(float(v), 4) for v in row]]}})


def make_requests(n: int = 512, *, model: str = "credit", mix_invocations: float = 0.0,
                  users: int = 10_000, seed: int = 7) -> list[BenchRequest]:
    """`n` requests: OIP infer on `model` (and a `mix_invocations` share of `/invocations`),
    each from one of `users` user ids sent in `x-user-id`."""
    rng = np.random.default_rng(seed)
    rows = synth_applicants(n, rng)
    user_ids = rng.integers(0, users, n)
    out = []
    for i, row in enumerate(rows):
        headers = (("x-user-id", f"user-{user_ids[i]:06d}"),)
        if rng.random() < mix_invocations:
            out.append(BenchRequest("/invocations", headers, mlflow_body(row)))
        else:
            out.append(BenchRequest(f"/v2/models/{model}/infer", headers, oip_body(row)))
    return out


def lua_string(b: bytes) -> str:
    """A Lua string literal for ASCII bytes (3-digit escapes, so a following digit cannot join one)."""
    return '"' + "".join(c if c.isalnum() or c in " {}[]:,._-" else f"\\{ord(c):03d}" for c in b.decode()) + '"'
