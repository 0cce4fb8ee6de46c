"""Realistic traffic for a shadowlane deployment (Locust, FastHttpUser).

Each simulated client is one end user at a time, with a sticky `x-user-id` for a session of
requests, then moves on to another user (so a few hundred Locust users cover many thousands of
ids, as the bucketing sees in production). Requests mix the Open Inference Protocol (`POST
/v2/models/<endpoint>/infer`) with MLflow scoring (`POST /invocations`, `dataframe_split` and
`inputs` forms), with credit applications drawn from `shadowlane.demo_models.synth_applicants`.
About 5% are malformed on purpose; they must get a 4xx (counted as success), anything else is a
failure. Every request carries its own `x-request-id`; a valid answer must echo it.

Environment:
  SHADOWLANE_ENDPOINT      endpoint (OIP model name) to call, default "credit"
  SHADOWLANE_USERS         size of the end-user id space, default 100000
  LOCUST_WAIT_MIN/MAX      think time per simulated user in seconds, default 0.5 / 2.0
  SHADOWLANE_ID_LOG        if set, a file that receives the request ids of the 200 answers the
                           champion gave (one per line, written when the test stops); with a
                           100% shadow these are exactly the mirrored requests (tests use it)

See loadtests/README.md for headless and distributed runs.
"""

from __future__ import annotations

import itertools
import os
import random
import uuid

import numpy as np
import orjson
from locust import FastHttpUser, between, events, task

from shadowlane.demo_models import CREDIT_FEATURES, synth_applicants

ENDPOINT = os.environ.get("SHADOWLANE_ENDPOINT", "credit")
USERS = int(os.environ.get("SHADOWLANE_USERS", "100000"))
WAIT = (float(os.environ.get("LOCUST_WAIT_MIN", "0.5")), float(os.environ.get("LOCUST_WAIT_MAX", "2.0")))
ID_LOG = os.environ.get("SHADOWLANE_ID_LOG")
OIP_PATH = f"/v2/models/{ENDPOINT}/infer"
JSON = "application/json"

# A pool of realistic rows shared by all users; each request picks one.
_ROWS = np.round(synth_applicants(4096, np.random.default_rng()), 4).astype(float).tolist()
_CHAMPION_OK: list[str] = []  # request ids the champion answered with 200 (mirrored at 100%)


def _oip(row: list[float], request_id: str) -> bytes:
    return orjson.dumps({"id": request_id, "inputs": [
        {"name": "features", "shape": [1, len(row)], "datatype": "FP32", "data": row}]})


# Malformed requests and the 4xx each must get: (name, path, content type, body).
_MALFORMED = [
    ("malformed: not JSON", OIP_PATH, JSON, b'{"inputs": [{"name": "features",'),
    ("malformed: wrong shape", OIP_PATH, JSON, orjson.dumps(
        {"inputs": [{"name": "features", "shape": [1, 7], "datatype": "FP32", "data": [0.5] * 10}]})),
    ("malformed: unknown input", OIP_PATH, JSON, orjson.dumps(
        {"inputs": [{"name": "nope", "shape": [1, 10], "datatype": "FP32", "data": [0.5] * 10}]})),
    ("malformed: no input field", "/invocations", JSON, b'{"rows": [[1, 2, 3]]}'),
    ("malformed: csv", "/invocations", "text/csv", b"age,income_k\n40,50\n"),
    ("malformed: unknown model", "/v2/models/no-such-model/infer", JSON, _oip([0.5] * 10, "x")),
]


class ShadowlaneUser(FastHttpUser):
    """One client: a session of requests as one end user, then another user."""

    wait_time = between(*WAIT)

    def on_start(self) -> None:
        self._rng = random.Random()
        self._seq = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:12]
        self._new_session()

    def _new_session(self) -> None:
        self.user_id = f"user-{self._rng.randrange(USERS):06d}"
        self._left = self._rng.randint(5, 40)  # requests in this user's session

    def _headers(self, content_type: str = JSON) -> tuple[dict[str, str], str]:
        self._left -= 1
        if self._left <= 0:
            self._new_session()
        rid = f"{self._prefix}-{next(self._seq)}"
        return {"x-user-id": self.user_id, "x-request-id": rid, "content-type": content_type}, rid

    def _post_valid(self, name: str, path: str, body: bytes, headers: dict[str, str], rid: str,
                    key: str) -> None:
        with self.client.post(path, data=body, headers=headers, name=name, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {(r.text or '')[:200]}")
                return
            try:
                out = orjson.loads(r.content)
            except orjson.JSONDecodeError:
                r.failure("200 with a body that is not JSON")
                return
            if key not in out:
                r.failure(f"200 without {key!r}: {r.text[:200]}")
            elif r.headers.get("x-request-id") != rid:
                r.failure(f"x-request-id not echoed (sent {rid}, got {r.headers.get('x-request-id')})")
            else:
                r.success()
                if r.headers.get("x-shadowlane-variant") == "champion":
                    _CHAMPION_OK.append(rid)

    @task(14)
    def oip_infer(self) -> None:
        headers, rid = self._headers()
        self._post_valid("oip infer", OIP_PATH, _oip(self._rng.choice(_ROWS), rid), headers, rid, "outputs")

    @task(4)
    def mlflow_dataframe_split(self) -> None:
        headers, rid = self._headers()
        body = orjson.dumps({"dataframe_split": {"columns": list(CREDIT_FEATURES), "data": [self._rng.choice(_ROWS)]}})
        self._post_valid("invocations dataframe_split", "/invocations", body, headers, rid, "predictions")

    @task(1)
    def mlflow_inputs(self) -> None:
        headers, rid = self._headers()
        body = orjson.dumps({"inputs": [self._rng.choice(_ROWS), self._rng.choice(_ROWS)]})
        self._post_valid("invocations inputs (2 rows)", "/invocations", body, headers, rid, "predictions")

    @task(1)
    def malformed(self) -> None:
        name, path, content_type, body = self._rng.choice(_MALFORMED)
        headers, _ = self._headers(content_type)
        with self.client.post(path, data=body, headers=headers, name=name, catch_response=True) as r:
            if 400 <= r.status_code < 500:
                r.success()
            else:
                r.failure(f"expected a 4xx, got HTTP {r.status_code}")


@events.test_stop.add_listener
def _write_id_log(environment, **kw) -> None:  # type: ignore[no-untyped-def]
    if ID_LOG and _CHAMPION_OK:
        with open(ID_LOG, "a") as f:
            f.write("\n".join(_CHAMPION_OK) + "\n")
        _CHAMPION_OK.clear()
