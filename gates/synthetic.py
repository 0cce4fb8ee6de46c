"""Synthetic shadow logs with known answers, for tests, the incident demo and the benchmark.

Credit applications come from `shadowlane.demo_models.synth_applicants`; the ground truth is drawn
from the demo model's own weights (`CREDIT_WEIGHTS`), so a model whose weights are further from
them ranks worse. Predictions come from real ONNX models run by onnxruntime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import onnx
import onnxruntime as ort

from shadowlane import record
from shadowlane.demo_models import CREDIT_FEATURES, CREDIT_WEIGHTS, credit_model, synth_applicants

SMALL_BUSINESS = CREDIT_FEATURES.index("small_business")
INCOME = CREDIT_FEATURES.index("income_k")


@dataclass
class Traffic:
    """Requests with their features, segments, timestamps and (true) outcomes."""

    X: np.ndarray  # float32 [n, 10]
    request_ids: list[str]
    ts: np.ndarray
    segment: np.ndarray  # object array of str
    region: np.ndarray
    outcome: np.ndarray  # int8, 1 = defaulted


def traffic(n: int, rng: np.random.Generator, *, start_ts: float = 1_700_000_000.0, hours: float = 48.0,
            income_scale: float = 1.0, prefix: str = "req") -> Traffic:
    """`n` single-row requests spread evenly over `hours`; outcomes from the true risk model."""
    X = synth_applicants(n, rng)
    X[:, INCOME] *= income_scale
    p = probabilities(credit_model(), X)[:, 1]
    outcome = (rng.random(n) < p).astype(np.int8)
    seg = np.where(X[:, SMALL_BUSINESS] > 0.5, "small_business", "consumer").astype(object)
    region = rng.choice(np.array(["north", "south", "east", "west"], dtype=object), n)
    ts = start_ts + np.sort(rng.random(n)) * hours * 3600
    return Traffic(X, [f"{prefix}-{i}" for i in range(n)], ts, seg, region, outcome)


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def probabilities(model: onnx.ModelProto, X: np.ndarray) -> np.ndarray:
    """The model's `probabilities` output [n, 2] on `X`, run by onnxruntime (the known answers of tests)."""
    return _session(model).run(["probabilities"], {"features": X})[0]


def credit_variant(bias_shift: float = 0.0, **weight_shifts: float) -> onnx.ModelProto:
    """The true credit model with some feature weights shifted, e.g. `credit_variant(utilization=-0.5)`
    (a champion that under-weights a signal ranks worse; `small_business=0.65` declines that segment)."""
    shift = np.zeros(CREDIT_WEIGHTS.size, np.float32)
    for name, delta in weight_shifts.items():
        if name not in CREDIT_FEATURES:
            raise ValueError(f"unknown credit feature {name!r}; features: {CREDIT_FEATURES}")
        shift[CREDIT_FEATURES.index(name)] = delta
    return credit_model(weight_shift=shift, bias_shift=bias_shift)


def _side(model: str, version: int, variant: str, p1: float | None, label: int | None, latency_ms: float,
          status: str = "ok") -> dict:
    ok = status == "ok"
    return {"model": model, "version": version, "variant": variant, "status": status, "latency_ms": latency_ms,
            "outputs": {"label": [label], "probabilities": [[1.0 - p1, p1]]} if ok else None,
            "error": None if ok else f"shadow {status}"}


def shadow_records(t: Traffic, champion: onnx.ModelProto, candidate: onnx.ModelProto, *,
                   champion_id: tuple[str, int] = ("credit-risk", 1),
                   candidate_id: tuple[str, int] = ("credit-risk", 2),
                   rng: np.random.Generator, latency_ms: float = 4.0, failure_rate: float = 0.0,
                   skip_segment: str | None = None, fail_segment: str | None = None,
                   noise_share: float = 0.0, keep_features: bool = True,
                   feature_names: tuple[str, ...] = CREDIT_FEATURES) -> Iterator[bytes]:
    """Encoded records, one per request: champion answered, candidate shadowed.

    `failure_rate` of the candidate's calls fail (alternately error and timeout), only in
    `fail_segment` if given; `skip_segment` requests get no candidate record (a shadow that silently
    skipped them); `noise_share` of requests also get a champion-vs-champion record (noise floor).
    """
    pc = probabilities(champion, t.X)[:, 1]
    ps = probabilities(candidate, t.X)[:, 1]
    lat = rng.lognormal(math.log(latency_ms), 0.3, t.X.shape[0])
    fails = rng.random(t.X.shape[0]) < failure_rate
    if fail_segment is not None:
        fails &= t.segment == fail_segment
    noise = rng.random(t.X.shape[0]) < noise_share
    for i, rid in enumerate(t.request_ids):
        status = ("timeout" if i % 2 else "error") if fails[i] else "ok"
        champion_side = _side(*champion_id, "champion", float(pc[i]), int(pc[i] > 0.5), 2.0)
        rec = {
            "v": 1, "ts": float(t.ts[i]), "request_id": rid, "unit_id": f"u{i}", "endpoint": "credit",
            "protocol": "oip", "rows": 1,
            "champion": champion_side,
            "shadow": _side(*candidate_id, "candidate", float(ps[i]), int(ps[i] > 0.5), float(lat[i]), status),
            "features_hash": f"xxh3:{i:016x}",
            "features": ({n: [float(t.X[i, j])] for j, n in enumerate(feature_names)} if keep_features else None),
            "attributes": {"segment": str(t.segment[i]), "region": str(t.region[i])},
        }
        if noise[i]:
            yield record.encode({**rec, "shadow": {**champion_side, "variant": "champion-copy"}})  # type: ignore[arg-type]
        if skip_segment is None or t.segment[i] != skip_segment:
            yield record.encode(rec)  # type: ignore[arg-type]


def label_lines(t: Traffic, *, share: float = 1.0, rng: np.random.Generator | None = None) -> Iterator[bytes]:
    """Outcome JSON lines for a share of the requests (the others' labels have not arrived yet)."""
    import orjson

    keep = np.ones(len(t.request_ids), bool) if share >= 1 else (rng or np.random.default_rng(0)).random(len(t.request_ids)) < share
    for i in np.flatnonzero(keep):
        yield orjson.dumps({"request_id": t.request_ids[i], "row": 0, "label": int(t.outcome[i]),
                            "ts": float(t.ts[i]) + 86400})
