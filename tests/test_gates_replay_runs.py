"""`shadowlane replay`: a real ONNX candidate over logged requests, then gated like a live shadow."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from jsonschema import Draft202012Validator

from gates import synthetic as S
from gates.drift_stats import training_stats
from gates.evaluate import evaluate
from shadowlane.cli import main as shadowlane_main
from shadowlane.demo_models import CREDIT_FEATURES, save
from shadowlane.record import json_schema
from shadowlane.segments import SegmentWriter, read_lines

N = 2500
CHAMPION = S.credit_variant(delinquencies_2y=-0.6, utilization=-0.5)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A live log of the champion with an old shadow (v2), features kept; some records duplicated."""
    root = tmp_path_factory.mktemp("replay")
    t = S.traffic(N, np.random.default_rng(31))
    records = list(S.shadow_records(t, CHAMPION, CHAMPION, rng=np.random.default_rng(0), noise_share=0.2))
    no_features = orjson.loads(records[0])
    no_features.update(request_id="no-features", features=None)
    w = SegmentWriter(root / "log", segment_max_bytes=256 * 1024)
    w.write_many(records + records[:50] + [orjson.dumps(no_features)])
    w.close()
    (root / "labels.jsonl").write_bytes(b"\n".join(S.label_lines(t)) + b"\n")
    candidate = save(S.credit_variant(), root / "candidate.onnx")
    return {"root": root, "traffic": t, "candidate": candidate}


def test_replay_writes_schema_valid_records_with_the_candidates_answers(logged, tmp_path, capsys):
    root, t = logged["root"], logged["traffic"]
    rc = shadowlane_main(["replay", "--log", str(root / "log"), "--candidate", str(logged["candidate"]),
                          "--name", "credit-risk", "--version", "7", "--out", str(tmp_path / "out"),
                          "--feature-names", ",".join(CREDIT_FEATURES)])
    assert rc == 0
    assert "replayed 2500 requests (0 failed), skipped 1 without features" in capsys.readouterr().out
    out = [orjson.loads(line) for line in read_lines(tmp_path / "out")]
    assert len(out) == N
    validator = Draft202012Validator(json_schema())
    for rec in out[:200]:
        validator.validate(rec)
    # known answer: the candidate's probabilities on the logged features, request by request
    expected = S.probabilities(S.credit_variant(), t.X)
    index = {rid: i for i, rid in enumerate(t.request_ids)}
    got = np.array([rec["shadow"]["outputs"]["probabilities"][0] for rec in out], dtype=np.float32)
    want = expected[[index[rec["request_id"]] for rec in out]]
    np.testing.assert_array_equal(got, want)
    assert {(r["shadow"]["model"], r["shadow"]["version"], r["shadow"]["variant"]) for r in out} == {("credit-risk", 7, "replay")}
    logged_champions = {orjson.loads(line)["request_id"]: orjson.loads(line)["champion"] for line in read_lines(root / "log")}
    assert all(rec["champion"] == logged_champions[rec["request_id"]] for rec in out)


def test_replayed_candidate_is_gated(logged, tmp_path):
    root = logged["root"]
    shadowlane_main(["replay", "--log", str(root / "log"), "--candidate", str(logged["candidate"]),
                     "--name", "credit-risk", "--version", "7", "--out", str(tmp_path / "out")])
    stats = training_stats(S.traffic(3000, np.random.default_rng(4)).X, CREDIT_FEATURES)
    sig = {"inputs": orjson.dumps([{"type": "double", "name": n} for n in CREDIT_FEATURES]).decode()}
    ev = evaluate(tmp_path / "out", candidate=("credit-risk", 7), labels=root / "labels.jsonl",
                  config={"evidence": {"min_labelled": 500}, "latency": {"budget_ms": 50},
                          "fairness": {"max_decline_ratio": 2.0}},
                  signature=sig, training_stats=stats)
    assert ev.verdict == "pass", ev.to_json()
    assert ev.gate("accuracy").values["auc_candidate"] > ev.gate("accuracy").values["auc_champion"]


def test_tensor_features_and_model_errors(tmp_path):
    """Records whose features are the raw tensor input replay too; a wrong width is a recorded error."""
    t = S.traffic(20, np.random.default_rng(2))
    base = [orjson.loads(r) for r in S.shadow_records(t, CHAMPION, CHAMPION, rng=np.random.default_rng(0))]
    for i, rec in enumerate(base):
        rec["features"] = {"features": t.X[i:i + 1].tolist() if i < 15 else t.X[i:i + 1, :9].tolist()}
    w = SegmentWriter(tmp_path / "log")
    w.write_many(orjson.dumps(r) for r in base)
    w.close()
    model = save(S.credit_variant(), tmp_path / "c.onnx")
    assert shadowlane_main(["replay", "--log", str(tmp_path / "log"), "--candidate", str(model), "--name", "c",
                            "--version", "1", "--out", str(tmp_path / "out")]) == 0
    out = [orjson.loads(line) for line in read_lines(tmp_path / "out")]
    assert [r["shadow"]["status"] for r in out] == ["ok"] * 15 + ["error"] * 5
    assert "failed" in out[-1]["shadow"]["error"]


def test_replay_through_an_upstream_oip_server(logged, tmp_path, proxy_server, onnx_models, capsys):
    """The candidate served by a real OIP server (shadowlane's own proxy, serving credit_model())."""
    from tests.fixtures.proxy import base_config

    upstream = proxy_server(base_config(onnx_models, tmp_path / "upstream-log"))
    root, t = logged["root"], logged["traffic"]
    rc = shadowlane_main(["replay", "--log", str(root / "log"), "--upstream", upstream.url, "--remote-model", "credit",
                          "--name", "credit-risk", "--version", "8", "--out", str(tmp_path / "out"),
                          "--feature-names", ",".join(CREDIT_FEATURES)])
    assert rc == 0, capsys.readouterr().err
    out = [orjson.loads(line) for line in read_lines(tmp_path / "out")]
    assert len(out) == N and all(r["shadow"]["status"] == "ok" for r in out)
    expected = S.probabilities(S.credit_variant(), t.X)
    index = {rid: i for i, rid in enumerate(t.request_ids)}
    got = np.array([r["shadow"]["outputs"]["probabilities"][0] for r in out], dtype=np.float32)
    np.testing.assert_allclose(got, expected[[index[r["request_id"]] for r in out]], rtol=1e-6)
    assert all(r["shadow"]["latency_ms"] > 0 for r in out)
