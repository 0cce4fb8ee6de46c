"""The real proxy writes the shadow log, the gate reads it: one pass end to end on loopback."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from sklearn.metrics import roc_auc_score

from gates import synthetic as S
from gates.drift_stats import training_stats
from gates.evaluate import evaluate
from shadowlane.demo_models import CREDIT_FEATURES
from tests.fixtures.proxy import base_config, oip_body

REQUESTS = 400


def test_gate_reads_the_real_proxys_log(proxy_server, onnx_models, tmp_path):
    log = tmp_path / "shadowlog"
    cfg = base_config(onnx_models, log, shadows=[{"model": "credit-v2"}, {"model": "credit-v1"}],
                      attribute_headers={"segment": "x-segment"})
    proxy = proxy_server(cfg)
    t = S.traffic(REQUESTS * 3, np.random.default_rng(3))
    sizes = np.random.default_rng(4).integers(1, 4, REQUESTS)  # batches of 1-3 rows
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    labels = []
    with proxy.client() as http:
        for i, (start, size) in enumerate(zip(starts, sizes)):
            rows = t.X[start:start + size]
            seg = "small_business" if rows[0, S.SMALL_BUSINESS] > 0.5 else "consumer"
            r = http.post("/v2/models/credit/infer", json=oip_body(rows),
                          headers={"x-request-id": f"q{i}", "x-user-id": f"u{i}", "x-segment": seg})
            assert r.status_code == 200, r.text
            labels += [{"request_id": f"q{i}", "row": j, "label": int(t.outcome[start + j])} for j in range(size)]
    assert proxy.stop() == 0  # graceful: shadows drained, sink flushed and sealed
    (tmp_path / "labels.jsonl").write_bytes(b"\n".join(orjson.dumps(x) for x in labels) + b"\n")

    sig = {"inputs": json.dumps([{"type": "float", "name": n} for n in CREDIT_FEATURES])}
    stats = training_stats(S.traffic(3000, np.random.default_rng(5)).X, CREDIT_FEATURES)
    ev = evaluate(log, candidate=("credit-risk", 2), labels=tmp_path / "labels.jsonl", signature=sig,
                  training_stats=stats, config={"evidence": {"min_labelled": 300, "min_duration_h": 0},
                                                "latency": {"budget_ms": 1000}, "fairness": {"min_group_rows": 50}})
    rows = int(sizes.sum())
    assert ev.summary["candidate_records"] == REQUESTS and ev.summary["rows"] == rows
    assert ev.summary["labelled_rows"] == rows
    assert ev.gate("schema").passed and ev.gate("drift").passed, (ev.gate("schema").reason, ev.gate("drift").reason)
    # known answer: AUC of the two real models on the rows sent, in request/row order
    X, y = t.X[:rows], t.outcome[:rows]
    champ = S.probabilities(S.credit_variant(), X)[:, 1]
    acc = ev.gate("accuracy").values
    assert acc["auc_champion"] == pytest.approx(roc_auc_score(y, champ), abs=1e-9)
    # the champion shadowing itself is the noise floor: identical answers
    nf = ev.divergence["noise_floor"]
    assert nf["pairs"] == rows and nf["agreement_rate"] == 1.0 and nf["mean_abs_diff"] == 0.0
    assert set(ev.divergence["segments"]["segment"]) == {"consumer", "small_business"}
