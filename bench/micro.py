"""Micro-benchmarks of the pieces of a request, one at a time, in a tight loop (pinned to CPU 0).

    .venv/bin/python bench/micro.py

Tight loops flatter everything (warm caches; in the server the same calls cost 2-3x more, see
docs/performance.md), so use these to compare alternatives for one piece, not to add up a request.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.payloads import make_requests  # noqa: E402
from proxy.backends.onnx import OnnxBackend  # noqa: E402
from proxy.codec import decode_oip, encode_oip, parse_json  # noqa: E402
from proxy.shadow import _labels, _score, features_hash  # noqa: E402
from shadowlane.demo_models import CREDIT_FEATURES, credit_model, save  # noqa: E402
from shadowlane.record import encode  # noqa: E402


def timeit(fn: Callable[[int], Any], n: int = 20_000) -> tuple[float, float]:
    """(p50, p99) in µs of fn(i) over n calls after a warm-up."""
    for i in range(1000):
        fn(i)
    ts = []
    perf = time.perf_counter
    for i in range(n):
        t = perf()
        fn(i)
        ts.append(perf() - t)
    a = np.array(ts) * 1e6
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def main() -> int:
    try:
        os.sched_setaffinity(0, {0})
    except OSError:
        pass
    d = Path(tempfile.mkdtemp())
    backend = OnnxBackend("credit", 1, save(credit_model(), d / "c.onnx"))
    shadow = OnnxBackend("credit", 2, save(credit_model(bias_shift=0.1), d / "s.onnx"))
    bodies = [r.body for r in make_requests(256)]
    reqs = [parse_json(b) for b in bodies]
    feeds = [decode_oip(r, backend.inputs) for r in reqs]
    outs = [backend.predict(f) for f in feeds]
    souts = [shadow.predict(f) for f in feeds]
    sess = backend._session
    names = backend._output_names
    raw_sess = sess._sess  # the C++ binding under InferenceSession.run's Python checks
    k = len(feeds)

    def divergence_per_row(i: int) -> None:
        a, b = _score(outs[i % k]), _score(souts[i % k])
        for x in np.abs(a.astype(np.float64) - b)[:256]:
            float(x)
        la, lb = _labels(outs[i % k]), _labels(souts[i % k])
        int(np.count_nonzero(la == lb))

    def record(i: int) -> bytes:
        f = feeds[i % k]
        x = f["features"]
        cols = np.ascontiguousarray(x.T)
        return encode({"v": 1, "ts": 1.0, "request_id": "abc-1", "unit_id": "user-1", "endpoint": "credit",
                       "protocol": "oip", "rows": 1,
                       "champion": {"model": "credit", "version": 1, "variant": "champion", "status": "ok",
                                    "latency_ms": 0.02, "outputs": outs[i % k], "error": None},
                       "shadow": {"model": "credit", "version": 2, "variant": "credit-v2", "status": "ok",
                                  "latency_ms": 0.02, "outputs": souts[i % k], "error": None, "batch_rows": 64},
                       "features_hash": features_hash(f),
                       "features": {n: cols[j] for j, n in enumerate(CREDIT_FEATURES)}, "attributes": {}})

    cases: list[tuple[str, Callable[[int], Any]]] = [
        ("orjson.loads (request body)", lambda i: orjson.loads(bodies[i % k])),
        ("decode_oip (to numpy)", lambda i: decode_oip(reqs[i % k], backend.inputs)),
        ("OnnxBackend.predict (InferenceSession.run)", lambda i: backend.predict(feeds[i % k])),
        ("InferenceSession._sess.run (C binding, no checks)", lambda i: raw_sess.run(names, feeds[i % k], None)),
        ("encode_oip (reply)", lambda i: encode_oip("credit", "1", None, outs[i % k], None)),
        ("features_hash", lambda i: features_hash(feeds[i % k])),
        ("divergence per record (score, abs, labels)", divergence_per_row),
        ("shadow record dict + orjson encode", record),
    ]
    print(f"{'piece':52s} {'p50 µs':>8s} {'p99 µs':>8s}")
    for name, fn in cases:
        p50, p99 = timeit(fn)
        print(f"{name:52s} {p50:8.2f} {p99:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
