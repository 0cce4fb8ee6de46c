"""Registry half on a real MLflow sqlite registry: signatures and training stats stored with the
version, gate results as tags, the None → Staging → Production → Archived lifecycle, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gates import synthetic as syn
from gates.audit import AuditLog
from gates.evaluate import evaluate
from gates.lifecycle import Lifecycle, PromotionError, stage_of
from gates.registry import (MAX_REASON, RegistryError, load_signature, load_training_stats, record_gate_results,
                            register_onnx, verdict_of)
from gates.review import CHECKLIST, Reviews
from shadowlane.demo_models import CREDIT_FEATURES, credit_model
from tests.fixtures.mlflow import evaluation_dict, register_credit

YES = {k: "yes" for k in CHECKLIST}


def _audit(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit.jsonl")


def _approve(client, audit: AuditLog, name: str, version: int) -> None:  # type: ignore[no-untyped-def]
    reviews = Reviews(client, audit)
    reviews.request(name, version, "alice")
    reviews.approve(name, version, "rita", YES)


def test_version_keeps_signature_and_training_stats(mlflow_client, model_name: str) -> None:  # type: ignore[no-untyped-def]
    mv = register_credit(mlflow_client, model_name)
    assert int(mv.version) == 1 and mv.tags["lifecycle.stage"] == "None" and mv.tags["author"] == "alice"
    sig = load_signature(mlflow_client, model_name, 1)
    assert sig.inputs.input_names() == list(CREDIT_FEATURES)
    assert [s.name for s in sig.outputs.inputs] == ["label", "probabilities"]
    stats = load_training_stats(mlflow_client, model_name, 1)
    assert stats["format"] == "shadowlane.training-stats.v1" and set(stats["features"]) == set(CREDIT_FEATURES)


def _traffic_evaluation(model_name: str, candidate_shift: np.ndarray, stats_version: int, client) -> dict:  # type: ignore[no-untyped-def]
    """A real gate run over synthetic shadow traffic: champion is a noisy model, the candidate given."""
    rng = np.random.default_rng(11)
    t = syn.traffic(3000, rng, hours=30)
    champ_shift = np.random.default_rng(2).normal(0, 0.5, 10).astype(np.float32)
    champ_shift[syn.SMALL_BUSINESS] = 0
    candidate = credit_model(weight_shift=candidate_shift)
    lines = list(syn.shadow_records(t, credit_model(weight_shift=champ_shift), candidate, rng=rng,
                                    candidate_id=(model_name, stats_version)))
    ev = evaluate(lines, candidate=(model_name, stats_version), labels=list(syn.label_lines(t)),
                  signature=load_signature(client, model_name, stats_version),
                  training_stats=load_training_stats(client, model_name, stats_version))
    return ev.to_dict()


def test_better_model_passes_to_staging_biased_one_is_blocked(mlflow_client, model_name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    audit = _audit(tmp_path)
    lc = Lifecycle(mlflow_client, audit)
    good_shift = np.random.default_rng(3).normal(0, 0.05, 10).astype(np.float32)
    good_shift[syn.SMALL_BUSINESS] = 0
    register_credit(mlflow_client, model_name, weight_shift=good_shift)
    ev = _traffic_evaluation(model_name, good_shift, 1, mlflow_client)
    assert ev["verdict"] == "pass", [g["reason"] for g in ev["gates"] + ev["evidence"] if not g["passed"]]
    tags = record_gate_results(mlflow_client, model_name, 1, ev, audit=audit)
    assert tags["gate.verdict"] == "pass" and tags["gate.fairness.passed"] == "true"
    t = lc.promote(model_name, 1, "staging", "alice")
    assert (t.from_stage, t.to_stage) == ("None", "Staging")
    rm = mlflow_client.get_registered_model(model_name)
    assert rm.aliases == {"staging": 1}
    mv = mlflow_client.get_model_version(model_name, "1")
    assert float(mv.tags["metric.accuracy.auc"]) == pytest.approx(ev["gates"][0]["values"]["auc_candidate"])

    biased_shift = good_shift.copy()
    biased_shift[syn.SMALL_BUSINESS] = 1.0
    register_credit(mlflow_client, model_name, weight_shift=biased_shift)
    ev2 = _traffic_evaluation(model_name, biased_shift, 2, mlflow_client)
    fairness = next(g for g in ev2["gates"] if g["name"] == "fairness")
    assert ev2["verdict"] == "fail" and not fairness["passed"]
    record_gate_results(mlflow_client, model_name, 2, ev2, audit=audit)
    with pytest.raises(PromotionError, match="fairness"):
        lc.promote(model_name, 2, "staging", "alice")
    assert stage_of(mlflow_client, model_name, 2) == "None"

    runs = [r for r in audit.records() if r["kind"] == "gate.run"]
    assert [(r["payload"]["version"], r["payload"]["verdict"]) for r in runs] == [(1, "pass"), (2, "fail")]
    assert runs[1]["payload"]["data_version"] and runs[1]["payload"]["champion_metrics_same_traffic"]["accuracy.auc"] > 0.5
    assert audit.verify().ok


def test_none_to_production_is_refused_even_when_gates_pass_and_reviewed(mlflow_client, model_name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    audit = _audit(tmp_path)
    register_credit(mlflow_client, model_name)
    record_gate_results(mlflow_client, model_name, 1, evaluation_dict(model_name, 1), audit=audit)
    _approve(mlflow_client, audit, model_name, 1)
    with pytest.raises(PromotionError, match="None straight to Production"):
        Lifecycle(mlflow_client, audit).promote(model_name, 1, "production", "alice")
    assert stage_of(mlflow_client, model_name, 1) == "None"
    assert "production" not in mlflow_client.get_registered_model(model_name).aliases
    assert not [r for r in audit.records() if r["kind"] == "promote"]


@pytest.mark.parametrize("evaluation, message", [
    (dict(failing=("drift",)), "needs a passing gate verdict, it has fail"),
    (dict(insufficient=True), "it has insufficient_evidence"),
    (None, "no gate results"),
])
def test_staging_needs_a_passing_verdict(mlflow_client, model_name: str, tmp_path: Path, evaluation, message: str) -> None:  # type: ignore[no-untyped-def]
    register_credit(mlflow_client, model_name)
    if evaluation is not None:
        record_gate_results(mlflow_client, model_name, 1, evaluation_dict(model_name, 1, **evaluation))
    with pytest.raises(PromotionError, match=message):
        Lifecycle(mlflow_client, _audit(tmp_path)).promote(model_name, 1, "staging", "alice")


def test_forged_verdict_tag_is_not_enough(mlflow_client, model_name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    audit = _audit(tmp_path)
    register_credit(mlflow_client, model_name)
    record_gate_results(mlflow_client, model_name, 1, evaluation_dict(model_name, 1, failing=("fairness",)), audit=audit)
    mlflow_client.set_model_version_tag(model_name, "1", "gate.verdict", "pass")  # someone edits the registry
    with pytest.raises(PromotionError, match="not backed by its last gate.run record"):
        Lifecycle(mlflow_client, audit).promote(model_name, 1, "staging", "alice")
    # A passing run recorded without the audit log does not count either.
    record_gate_results(mlflow_client, model_name, 1, evaluation_dict(model_name, 1))
    with pytest.raises(PromotionError, match="not backed"):
        Lifecycle(mlflow_client, audit).promote(model_name, 1, "staging", "alice")
    record_gate_results(mlflow_client, model_name, 1, evaluation_dict(model_name, 1), audit=audit)
    assert Lifecycle(mlflow_client, audit).promote(model_name, 1, "staging", "alice").to_stage == "Staging"


def test_gate_tags_are_small_and_replace_the_previous_run(mlflow_client, model_name: str) -> None:  # type: ignore[no-untyped-def]
    register_credit(mlflow_client, model_name)
    ev = evaluation_dict(model_name, 1, failing=("fairness",))
    ev["gates"].append({"name": "business.max_declines", "passed": True, "reason": "ok", "values": {}})
    tags = record_gate_results(mlflow_client, model_name, 1, ev)
    assert tags["gate.fairness.passed"] == "false" and len(tags["gate.fairness.reason"]) == MAX_REASON
    assert tags["gate.business.max_declines.passed"] == "true"
    assert tags["gate.evidence.labelled.passed"] == "true"
    # The full evaluation is an artifact of the version's run.
    run_id, path = tags["gate.evaluation_uri"].removeprefix("runs:/").split("/", 1)
    local = mlflow_client.download_artifacts(run_id, path)
    assert json.loads(Path(local).read_text())["gates"][2]["reason"] == ev["gates"][2]["reason"]

    record_gate_results(mlflow_client, model_name, 1, evaluation_dict(model_name, 1))
    mv = mlflow_client.get_model_version(model_name, "1")
    assert mv.tags["gate.verdict"] == "pass" and mv.tags["gate.fairness.passed"] == "true"
    assert "gate.business.max_declines.passed" not in mv.tags  # stale tags of the earlier run are gone


def test_verdict_is_derived_when_absent() -> None:
    ev = evaluation_dict("m", 1, failing=("schema",))
    del ev["verdict"]
    assert verdict_of(ev) == "fail"
    ev = evaluation_dict("m", 1, insufficient=True)
    del ev["verdict"]
    assert verdict_of(ev) == "insufficient_evidence"


def test_production_replaces_archives_and_rolls_back(mlflow_client, model_name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    audit = _audit(tmp_path)
    lc = Lifecycle(mlflow_client, audit)
    for v in (1, 2):
        register_credit(mlflow_client, model_name)
        record_gate_results(mlflow_client, model_name, v, evaluation_dict(model_name, v, auc=0.80 + v / 100), audit=audit)
        lc.promote(model_name, v, "staging", "alice")
        _approve(mlflow_client, audit, model_name, v)
        t = lc.promote(model_name, v, "production", "olga")
        assert t.archived == (1 if v == 2 else None)
    assert mlflow_client.get_registered_model(model_name).aliases == {"production": 2}
    assert [stage_of(mlflow_client, model_name, v) for v in (1, 2)] == ["Archived", "Production"]

    with pytest.raises(PromotionError, match="serving as Production"):
        lc.promote(model_name, 2, "archived", "olga")
    with pytest.raises(PromotionError, match="Archived → Production is not a lifecycle transition"):
        lc.promote(model_name, 1, "production", "olga")

    t = lc.rollback(model_name, "oncall", reason="declines spiked")
    assert (t.version, t.archived) == (1, 2)
    assert mlflow_client.get_registered_model(model_name).aliases == {"production": 1}
    assert [stage_of(mlflow_client, model_name, v) for v in (1, 2)] == ["Production", "Archived"]
    with pytest.raises(PromotionError, match="no earlier Production version"):
        lc.rollback(model_name, "oncall", reason="again")

    promos = [r for r in audit.records() if r["kind"] in ("promote", "rollback")]
    assert [r["kind"] for r in promos] == ["promote"] * 4 + ["rollback"]
    second_prod = promos[3]["payload"]
    assert second_prod["production"]["version"] == 1  # production model at the time, with its metrics
    assert second_prod["production"]["metrics"]["accuracy.auc"] == pytest.approx(0.81)
    assert second_prod["reviewers"] == ["rita"]
    approvals = [r["payload"] for r in audit.records() if r["kind"] == "review.approve"]
    assert approvals[0]["production"] is None and approvals[1]["production"]["version"] == 1
    assert approvals[1]["data_version"] and approvals[1]["evaluation_sha256"] == second_prod["evaluation_sha256"]
    assert promos[4]["payload"] == {**promos[4]["payload"], "from_version": 2, "to_version": 1,
                                    "reason": "declines spiked"}
    assert audit.verify().ok


def test_register_refuses_mismatched_feature_names(mlflow_client, model_name: str) -> None:  # type: ignore[no-untyped-def]
    from gates.registry import RegistryError

    with pytest.raises(RegistryError, match="3 names but input 'features' has shape"):
        register_onnx(mlflow_client, model_name, credit_model(), author="a", feature_names=["a", "b", "c"])


def test_registry_cli_register_record_show(mlflow_uri: str, mlflow_client, model_name: str, tmp_path: Path,  # type: ignore[no-untyped-def]
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from gates.cli import registry_main
    from shadowlane.demo_models import save, synth_applicants

    onnx_path = save(credit_model(), tmp_path / "m.onnx")
    np.save(tmp_path / "train.npy", synth_applicants(300, np.random.default_rng(1)))
    audit = tmp_path / "audit.jsonl"
    common = ["--registry-uri", mlflow_uri, "--audit-log", str(audit)]
    assert registry_main(["register", "--model", model_name, "--onnx", str(onnx_path), "--author", "sam",
                          "--feature-names", ",".join(CREDIT_FEATURES), "--training-data", str(tmp_path / "train.npy"),
                          "--high-stakes", *common]) == 0
    assert f"registered {model_name} v1" in capsys.readouterr().out
    assert load_training_stats(mlflow_client, model_name, 1)["rows"] == 300
    assert mlflow_client.get_registered_model(model_name).tags["high_stakes"] == "true"

    (tmp_path / "eval.json").write_text(json.dumps(evaluation_dict(model_name, 1, failing=("drift",))))
    assert registry_main(["record-gate", "--model", model_name, "--version", "1", "--evaluation",
                          str(tmp_path / "eval.json"), *common]) == 0
    assert "gate.verdict=fail" in capsys.readouterr().out
    assert [r["kind"] for r in AuditLog(audit).records()] == ["register", "gate.run"]
    assert registry_main(["show", "--model", model_name, "--version", "1", "--registry-uri", mlflow_uri]) == 0
    shown = capsys.readouterr().out
    assert "gate.drift.passed = false" in shown and "lifecycle.stage = None" in shown
    assert registry_main(["register", "--model", model_name, "--onnx", str(onnx_path), "--author", "sam",
                          "--training-data", str(tmp_path / "train.npy"), *common]) == 1
    assert "--training-data needs --feature-names" in capsys.readouterr().err


def test_a_stated_pass_must_agree_with_the_gate_results() -> None:
    ev = evaluation_dict("m", 1, failing=("fairness",))
    ev["verdict"] = "pass"  # a hand-edited evaluation JSON
    with pytest.raises(RegistryError, match="says pass but fairness did not pass"):
        verdict_of(ev)
    ev = evaluation_dict("m", 1, insufficient=True)
    ev["verdict"] = "pass"
    with pytest.raises(RegistryError, match="evidence.labelled"):
        verdict_of(ev)
    assert verdict_of(evaluation_dict("m", 1)) == "pass"
