"""`shadowlane registry copy` between two real sqlite registries: artifacts, signature, tags and
provenance (and lineage across two hops) survive; per-registry lifecycle and review do not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gates.audit import AuditLog
from gates.cli import registry_main
from gates.copy import copy_version, verify_copy
from gates.lifecycle import Lifecycle, PromotionError
from gates.registry import load_signature, load_training_stats, record_gate_results
from shadowlane.demo_models import CREDIT_FEATURES
from tests.fixtures.mlflow import evaluation_dict, register_credit


def test_copy_preserves_tags_signature_and_provenance(mlflow_client, mlflow_client_b, mlflow_uri: str,  # type: ignore[no-untyped-def]
                                                       model_name: str, tmp_path: Path) -> None:
    register_credit(mlflow_client, model_name, author="alice", high_stakes=True)
    src_audit = AuditLog(tmp_path / "a.jsonl")
    record_gate_results(mlflow_client, model_name, 1, evaluation_dict(model_name, 1), audit=src_audit)
    Lifecycle(mlflow_client, src_audit).promote(model_name, 1, "staging", "alice")
    src_mv = mlflow_client.get_model_version(model_name, "1")

    dst = mlflow_client_b
    audit = AuditLog(tmp_path / "audit.jsonl")
    res = copy_version(mlflow_client, dst, model_name, 1, actor="carol", audit=audit)
    mv = dst.get_model_version(model_name, str(res.version))
    # Every shadowlane tag travels: author, gate results, metrics, training stats.
    for key in ("author", "gate.verdict", "gate.fairness.passed", "gate.fairness.reason", "metric.accuracy.auc",
                "training_stats", "model_sha256"):
        assert mv.tags[key] == src_mv.tags[key], key
    assert mv.tags["provenance.source_uri"] == mlflow_uri
    assert mv.tags["provenance.source_version"] == "1" and mv.tags["provenance.source_name"] == model_name
    assert mv.tags["provenance.source_run_id"] == src_mv.run_id
    assert mv.tags["provenance.copied_by"] == "carol" and mv.tags["provenance.copied_at"].endswith("Z")
    assert mv.tags["provenance.source_stage"] == "Staging"
    assert mv.tags["lifecycle.stage"] == "None" and not dst.get_registered_model(model_name).aliases
    assert dst.get_registered_model(model_name).tags["high_stakes"] == "true"
    assert load_signature(dst, model_name, res.version).inputs.input_names() == list(CREDIT_FEATURES)
    assert load_training_stats(dst, model_name, res.version) == load_training_stats(mlflow_client, model_name, 1)
    assert verify_copy(dst, model_name, res.version)
    rec = list(audit.records())[-1]
    assert rec["kind"] == "registry.copy" and rec["payload"]["source"]["version"] == 1

    # A copy of the copy (back into the first registry, under another name) keeps the whole lineage.
    third, eu = mlflow_client, f"{model_name}-eu"
    res3 = copy_version(dst, third, model_name, res.version, actor="dave", dst_name=eu)
    lineage = json.loads(third.get_model_version(eu, str(res3.version)).tags["provenance.lineage"])
    assert [(h["copied_by"], h["version"]) for h in lineage] == [("carol", 1), ("dave", res.version)]
    assert res3.artifacts_sha256 == res.artifacts_sha256  # artifacts byte-identical across both hops

    # The copy must earn its own promotion in the destination.
    with pytest.raises(PromotionError, match="None straight to Production"):
        Lifecycle(third, AuditLog(tmp_path / "t.jsonl")).promote(eu, res3.version, "production", "dave")


def test_copy_cli(mlflow_client, mlflow_client_b, mlflow_uri: str, model_name: str,  # type: ignore[no-untyped-def]
                  capsys: pytest.CaptureFixture[str]) -> None:
    register_credit(mlflow_client, model_name)
    dst_uri = mlflow_client_b._tracking_client.tracking_uri
    argv = ["copy", "--src-uri", mlflow_uri, "--dst-uri", dst_uri, "--model", model_name, "--version", "1",
            "--actor", "carol"]
    assert registry_main(argv) == 0
    assert f"-> {model_name} v1" in capsys.readouterr().out
    assert registry_main([*argv[:-3], "7", "--actor", "carol"]) == 1
    assert "version 7 not found" in capsys.readouterr().err
