"""Baseline: onnxruntime `run` alone, and the whole inline champion compute, in a tight loop.

No HTTP, no event loop: the floor under any model server for this model. Prints JSON with
p50/p99 in µs for `run` alone and for parse + row + run + reply.
Usage: python -m bench.servers.onnx_alone [--iterations N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
import orjson

from bench.payloads import make_requests
from shadowlane.demo_models import credit_model, save


def _stats(ts: list[float]) -> dict[str, float]:
    a = np.array(ts) * 1e6
    return {"p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99)),
            "mean_us": float(a.mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=20_000)
    args = ap.parse_args(argv)
    path = save(credit_model(), tempfile.mkdtemp() + "/credit.onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    bodies = [r.body for r in make_requests(256)]
    rows = [np.asarray(orjson.loads(b)["inputs"][0]["data"], np.float32).reshape(1, -1) for b in bodies]
    perf = time.perf_counter
    run_t, all_t = [], []
    for i in range(args.iterations):
        x = rows[i % len(rows)]
        t = perf()
        sess.run(None, {name: x})
        run_t.append(perf() - t)
    for i in range(args.iterations):
        b = bodies[i % len(bodies)]
        t = perf()
        inp = orjson.loads(b)["inputs"][0]
        x = np.asarray(inp["data"], dtype=np.float32).reshape(inp["shape"])
        label, proba = sess.run(None, {name: x})
        orjson.dumps({"outputs": [{"name": "label", "data": label}, {"name": "probabilities", "data": proba}]},
                     option=orjson.OPT_SERIALIZE_NUMPY)
        all_t.append(perf() - t)
    out = {"onnxruntime_run": _stats(run_t[1000:]), "inline_compute": _stats(all_t[1000:]),
           "iterations": args.iterations}
    sys.stdout.buffer.write(orjson.dumps(out) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
