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
from gates.registry import connect, load_signature, load_training_stats, record_gate_results
from shadowlane.demo_models import CREDIT_FEATURES
from tests.fixtures.mlflow import evaluation_dict, register_credit


def _registry(tmp_path: Path, name: str):  # type: ignore[no-untyped-def]
    root = tmp_path / name
    root.mkdir()
    client = connect(f"sqlite:///{root}/mlflow.db")
    client.create_experiment("shadowlane", artifact_location=(root / "artifacts").as_uri())
    return client


def test_copy_preserves_tags_signature_and_provenance(mlflow_client, mlflow_uri: str, model_name: str,
                                                       tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    register_credit(mlflow_client, model_name, author="alice", high_stakes=True)
    record_gate_results(mlflow_client, model_name, 1, evaluation_dict(model_name, 1))
    Lifecycle(mlflow_client, AuditLog(tmp_path / "a.jsonl")).promote(model_name, 1, "staging", "alice")
    src_mv = mlflow_client.get_model_version(model_name, "1")

    dst = _registry(tmp_path, "dst")
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

    # A copy of the copy keeps the whole lineage.
    third = _registry(tmp_path, "third")
    res3 = copy_version(dst, third, model_name, res.version, actor="dave", dst_name="credit-eu")
    lineage = json.loads(third.get_model_version("credit-eu", str(res3.version)).tags["provenance.lineage"])
    assert [(h["copied_by"], h["version"]) for h in lineage] == [("carol", 1), ("dave", res.version)]
    assert res3.artifacts_sha256 == res.artifacts_sha256  # artifacts byte-identical across both hops

    # The copy must earn its own promotion in the destination.
    with pytest.raises(PromotionError, match="None straight to Production"):
        Lifecycle(third, AuditLog(tmp_path / "t.jsonl")).promote("credit-eu", res3.version, "production", "dave")


def test_copy_cli(mlflow_client, mlflow_uri: str, model_name: str, tmp_path: Path,  # type: ignore[no-untyped-def]
                  capsys: pytest.CaptureFixture[str]) -> None:
    register_credit(mlflow_client, model_name)
    dst_root = tmp_path / "d"
    dst_root.mkdir()
    dst_uri = f"sqlite:///{dst_root}/mlflow.db"
    connect(dst_uri).create_experiment("shadowlane", artifact_location=(dst_root / "art").as_uri())
    argv = ["copy", "--src-uri", mlflow_uri, "--dst-uri", dst_uri, "--model", model_name, "--version", "1",
            "--actor", "carol"]
    assert registry_main(argv) == 0
    assert f"-> {model_name} v1" in capsys.readouterr().out
    assert registry_main([*argv[:-3], "7", "--actor", "carol"]) == 1
    assert "version 7 not found" in capsys.readouterr().err
