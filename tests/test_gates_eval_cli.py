"""`shadowlane gate` end to end: exit codes, table, JSON, offline HTML report, registry recording."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from gates import gate_cmd
from gates import synthetic as S
from gates.drift_stats import training_stats
from shadowlane.cli import main as shadowlane_main
from shadowlane.demo_models import CREDIT_FEATURES
from shadowlane.segments import SegmentWriter
from tests.fixtures.mlflow import register_credit

N = 3000
CHAMPION = S.credit_variant(delinquencies_2y=-0.6, utilization=-0.5)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gatecli")
    t = S.traffic(N, np.random.default_rng(21))
    for name, model, kw in [("better", S.credit_variant(), {}), ("biased", S.credit_variant(small_business=0.65), {}),
                            ("short", S.credit_variant(), {})]:
        tt = S.traffic(N, np.random.default_rng(21), hours=3) if name == "short" else t
        w = SegmentWriter(root / name)
        w.write_many(S.shadow_records(tt, CHAMPION, model, rng=np.random.default_rng(1), **kw))
        w.close()
    (root / "labels.jsonl").write_bytes(b"\n".join(S.label_lines(t)) + b"\n")
    (root / "stats.json").write_text(json.dumps(training_stats(S.traffic(3000, np.random.default_rng(5)).X,
                                                               CREDIT_FEATURES)))
    sig = [{"type": "double", "name": n, "required": True} for n in CREDIT_FEATURES]
    (root / "sig.json").write_text(json.dumps({"inputs": json.dumps(sig)}))
    (root / "gates.yaml").write_text("latency:\n  budget_ms: 50\nevidence:\n  min_labelled: 500\n"
                                     "drift:\n  training_stats: stats.json\nschema:\n  signature: sig.json\n")
    return {"root": root}


@pytest.mark.parametrize("log, code, verdict", [("better", 0, "PASS"), ("biased", 1, "FAIL"),
                                                 ("short", 3, "INSUFFICIENT EVIDENCE")])
def test_exit_codes_table_json_and_report(world, tmp_path, capsys, log, code, verdict):
    root = world["root"]
    out_json, out_html = tmp_path / "ev.json", tmp_path / "report.html"
    rc = shadowlane_main(["gate", "--log", str(root / log), "--labels", str(root / "labels.jsonl"),
                          "--config", str(root / "gates.yaml"), "--candidate", "credit-risk:2",
                          "--json", str(out_json), "--report", str(out_html)])
    assert rc == code
    out = capsys.readouterr().out
    assert f"verdict: {verdict}" in out
    assert re.search(r"gate\s+fairness\s+(PASS|FAIL)", out)
    data = json.loads(out_json.read_text())
    assert data["verdict"] == {0: "pass", 1: "fail", 3: "insufficient_evidence"}[code]
    page = out_html.read_text()
    assert page.startswith("<!DOCTYPE html>") and verdict in page
    # opens offline: inline SVG plots, no scripts, no external resources
    assert page.count("<svg") == 3
    assert "<script" not in page and not re.search(r"""(src|href)=["']https?:""", page)


def test_usage_errors_exit_2(world, capsys):
    root = world["root"]
    assert gate_cmd.main(["--log", str(root / "missing"), "--candidate", "m:1"]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        gate_cmd.main(["--log", str(root / "better"), "--candidate", "credit-risk@champion"])
    assert e.value.code == 2
    bad = root / "bad.yaml"
    bad.write_text("accuracy:\n  min_auc: 2\n")
    assert gate_cmd.main(["--log", str(root / "better"), "--candidate", "m:1", "--config", str(bad)]) == 2
    assert "accuracy.min_auc" in capsys.readouterr().err


def test_record_in_registry_and_audit_log(tmp_path, mlflow_client, mlflow_uri, model_name, capsys):
    """The candidate's signature and training statistics come from the registry; results go back to it."""
    register_credit(mlflow_client, model_name)  # v1, the champion
    register_credit(mlflow_client, model_name, weight_shift=np.zeros(10, np.float32))  # v2, the candidate
    t = S.traffic(N, np.random.default_rng(22))
    w = SegmentWriter(tmp_path / "log")
    w.write_many(S.shadow_records(t, CHAMPION, S.credit_variant(), rng=np.random.default_rng(2),
                                  champion_id=(model_name, 1), candidate_id=(model_name, 2)))
    w.close()
    (tmp_path / "labels.jsonl").write_bytes(b"\n".join(S.label_lines(t)) + b"\n")
    (tmp_path / "gates.yaml").write_text("latency:\n  budget_ms: 50\nevidence:\n  min_labelled: 500\n")
    audit = tmp_path / "audit.jsonl"
    rc = gate_cmd.main(["--log", str(tmp_path / "log"), "--labels", str(tmp_path / "labels.jsonl"),
                        "--config", str(tmp_path / "gates.yaml"), "--candidate", f"{model_name}:2",
                        "--registry-uri", mlflow_uri, "--record", "--audit-log", str(audit), "--actor", "ci"])
    out = capsys.readouterr().out
    assert rc == 0, out
    tags = mlflow_client.get_model_version(model_name, "2").tags
    assert tags["gate.verdict"] == "pass"
    assert tags["gate.schema.passed"] == "true" and tags["gate.drift.passed"] == "true"
    assert tags["gate.data_version"].startswith("xxh3:")
    from gates.audit import AuditLog

    log = AuditLog(audit)
    assert log.verify().ok
    (rec,) = [r for r in log.records() if r["kind"] == "gate.run"]
    assert rec["actor"] == "ci" and rec["payload"]["verdict"] == "pass"
    assert rec["payload"]["candidate_metrics"]["accuracy.auc"] > rec["payload"]["champion_metrics_same_traffic"]["accuracy.auc"]
