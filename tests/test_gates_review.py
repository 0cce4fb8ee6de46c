"""Human review on a real MLflow registry + audit log: checklist, author rules, the 60 s flag,
two reviewers for high-stakes models, and promotion to Production enforcing all of it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gates.audit import AuditError, AuditLog
from gates.cli import promote_main, review_main
from gates.lifecycle import Lifecycle, PromotionError
from gates.registry import record_gate_results
from gates.review import CHECKLIST, FAST_APPROVAL_S, ReviewError
from tests.fixtures.mlflow import evaluation_dict, register_credit

YES = {k: "yes" for k in CHECKLIST}


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def staged(mlflow_client, model_name: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A version by alice that passed its gates into Staging; returns (reviews, lifecycle, clock)."""
    clock = Clock()
    audit = AuditLog(tmp_path / "audit.jsonl", clock=clock)
    register_credit(mlflow_client, model_name, author="alice")
    record_gate_results(mlflow_client, model_name, 1, evaluation_dict(model_name, 1), audit=audit)
    lc = Lifecycle(mlflow_client, audit)
    lc.promote(model_name, 1, "staging", "alice")
    return lc.reviews, lc, clock


def test_author_and_requester_cannot_approve(staged, model_name: str) -> None:  # type: ignore[no-untyped-def]
    reviews, lc, clock = staged
    reviews.request(model_name, 1, "bob")  # bob asks on alice's behalf
    clock.t += 300
    with pytest.raises(ReviewError, match="Alice is the author"):
        reviews.approve(model_name, 1, "Alice", YES)
    with pytest.raises(ReviewError, match="bob requested the review"):
        reviews.approve(model_name, 1, "bob", YES)
    with pytest.raises(PromotionError, match="needs an approved review"):
        lc.promote(model_name, 1, "production", "alice")
    reviews.approve(model_name, 1, "rita", YES)
    assert lc.promote(model_name, 1, "production", "alice").to_stage == "Production"


@pytest.mark.parametrize("answers, message", [
    ({**YES, "oncall_in_place": "no"}, "answered no: oncall_in_place"),
    ({k: v for k, v in YES.items() if k != "model_card_reviewed"}, "unanswered: model_card_reviewed"),
    ({}, "unanswered: model_card_reviewed, disaggregated_results_checked"),
    ({**YES, "looked_at_it": "yes"}, "unknown checklist items"),
    ({**YES, "known_limitations_acknowledged": "maybe"}, "is not yes or no"),
])
def test_incomplete_checklist_is_refused(staged, model_name: str, answers: dict, message: str) -> None:  # type: ignore[no-untyped-def]
    reviews, lc, _ = staged
    reviews.request(model_name, 1, "alice")
    with pytest.raises(ReviewError, match=message):
        reviews.approve(model_name, 1, "rita", answers)
    assert reviews.state(model_name, 1).status == "requested"
    assert not [r for r in reviews.audit.records() if r["kind"] == "review.approve"]


def test_fast_approval_is_flagged_slow_one_is_not(staged, model_name: str) -> None:  # type: ignore[no-untyped-def]
    reviews, _, clock = staged
    reviews.request(model_name, 1, "alice")
    clock.t += FAST_APPROVAL_S - 15
    rec = reviews.approve(model_name, 1, "rita", YES)
    assert rec["payload"]["fast_approval"] is True and rec["payload"]["seconds_since_request"] == 45
    state = reviews.state(model_name, 1)
    assert state.approved and state.flags and "rita" in state.flags[0]
    assert "fast approval" in reviews.client.get_model_version(model_name, "1").tags["review.flags"]

    reviews.request(model_name, 1, "alice")  # a new request resets the review
    assert reviews.state(model_name, 1).status == "requested"
    clock.t += FAST_APPROVAL_S + 1
    rec = reviews.approve(model_name, 1, "rita", YES)
    assert rec["payload"]["fast_approval"] is False and not reviews.state(model_name, 1).flags


def test_high_stakes_needs_two_distinct_reviewers(mlflow_client, model_name: str, staged) -> None:  # type: ignore[no-untyped-def]
    reviews, lc, clock = staged
    mlflow_client.set_registered_model_tag(model_name, "high_stakes", "true")
    reviews.request(model_name, 1, "alice")
    clock.t += 600
    first = reviews.approve(model_name, 1, "rita", YES)
    assert first["payload"]["required_approvals"] == 2 and first["payload"]["approvals"] == 1
    with pytest.raises(ReviewError, match="RITA already approved"):
        reviews.approve(model_name, 1, "RITA", YES)
    with pytest.raises(PromotionError, match="1 of 2 approvals"):
        lc.promote(model_name, 1, "production", "alice")
    reviews.approve(model_name, 1, "sam", YES)
    t = lc.promote(model_name, 1, "production", "alice")
    promo = [r for r in reviews.audit.records() if r["seq"] == t.audit_seq][0]
    assert promo["payload"]["reviewers"] == ["rita", "sam"]


def test_rejection_blocks_until_a_new_request(staged, model_name: str) -> None:  # type: ignore[no-untyped-def]
    reviews, lc, clock = staged
    reviews.request(model_name, 1, "alice")
    clock.t += 120
    reviews.approve(model_name, 1, "rita", YES)
    reviews.reject(model_name, 1, "sam", reason="small-business declines unexplained")
    with pytest.raises(PromotionError, match="review is rejected"):
        lc.promote(model_name, 1, "production", "alice")
    with pytest.raises(ReviewError, match="rejected by sam"):
        reviews.approve(model_name, 1, "tom", YES)


def test_new_gate_results_need_a_new_review(mlflow_client, staged, model_name: str) -> None:  # type: ignore[no-untyped-def]
    reviews, lc, clock = staged
    reviews.request(model_name, 1, "alice")
    clock.t += 120
    reviews.approve(model_name, 1, "rita", YES)
    # The gates are re-run on newer traffic after the approval: reviewers never saw these results.
    record_gate_results(mlflow_client, model_name, 1, evaluation_dict(model_name, 1, auc=0.9), audit=reviews.audit)
    with pytest.raises(PromotionError, match="changed after its review was requested"):
        lc.promote(model_name, 1, "production", "alice")
    reviews.request(model_name, 1, "alice")
    clock.t += 120
    reviews.approve(model_name, 1, "rita", YES)
    assert lc.promote(model_name, 1, "production", "alice").to_stage == "Production"


def test_registry_tags_alone_cannot_approve(mlflow_client, staged, model_name: str) -> None:  # type: ignore[no-untyped-def]
    _, lc, _ = staged
    mlflow_client.set_model_version_tag(model_name, "1", "review.status", "approved")
    with pytest.raises(PromotionError, match="review is none"):
        lc.promote(model_name, 1, "production", "alice")


def test_tampered_audit_log_blocks_promotion(staged, model_name: str) -> None:  # type: ignore[no-untyped-def]
    reviews, lc, clock = staged
    reviews.request(model_name, 1, "alice")
    clock.t += 120
    reviews.approve(model_name, 1, "rita", YES)
    path = reviews.audit.path
    path.write_text(path.read_text().replace('"actor":"rita"', '"actor":"root"'))
    with pytest.raises(AuditError, match="failed verification"):
        lc.promote(model_name, 1, "production", "alice")


def test_cli_review_and_promote(mlflow_uri: str, model_name: str, staged, tmp_path: Path,  # type: ignore[no-untyped-def]
                                capsys: pytest.CaptureFixture[str]) -> None:
    reviews, _, _ = staged
    common = ["--model", model_name, "--version", "1", "--registry-uri", mlflow_uri,
              "--audit-log", str(reviews.audit.path)]
    assert review_main(["request", *common, "--actor", "alice"]) == 0
    # Flags for three items only: refused, names the missing one.
    assert review_main(["approve", *common, "--actor", "rita", "--model-card-reviewed",
                        "--disaggregated-results-checked", "--known-limitations-acknowledged"]) == 1
    assert "unanswered: oncall_in_place" in capsys.readouterr().err
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({k: "yes" for k in CHECKLIST}))
    assert review_main(["approve", *common, "--actor", "rita", "--answers", str(answers)]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 approval" in out and "flagged" in out  # the CLI uses the real clock: seconds later
    assert review_main(["status", *common]) == 0
    assert "approved" in capsys.readouterr().out

    promote = ["--model", model_name, "--registry-uri", mlflow_uri, "--audit-log", str(reviews.audit.path)]
    assert promote_main([*promote, "--version", "1", "--to", "production", "--actor", "olga"]) == 0
    assert "Staging → Production" in capsys.readouterr().out
    assert promote_main([*promote, "--rollback", "--actor", "olga", "--reason", "x"]) == 1
    assert "no earlier Production version" in capsys.readouterr().err


def test_approvals_appended_around_the_rules_do_not_count(staged, model_name: str) -> None:  # type: ignore[no-untyped-def]
    # The chain only proves records were not changed after the fact; whoever can append to the log
    # could write an approval by the author or requester directly. The state must not count it.
    reviews, lc, clock = staged
    reviews.request(model_name, 1, "bob")
    clock.t += 300
    for actor in ("alice", " Bob "):
        reviews.audit.append("review.approve", actor, {"model": model_name, "version": 1, "fast_approval": False})
    st = reviews.state(model_name, 1)
    assert st.status == "requested" and st.approvers == []
    assert len([f for f in st.flags if "ignored" in f]) == 2
    with pytest.raises(PromotionError, match="needs an approved review"):
        lc.promote(model_name, 1, "production", "alice")
    reviews.approve(model_name, 1, "rita", YES)
    assert lc.promote(model_name, 1, "production", "alice").to_stage == "Production"


def test_fast_approval_is_flagged_from_the_record_times(staged, model_name: str) -> None:  # type: ignore[no-untyped-def]
    reviews, _, clock = staged
    reviews.request(model_name, 1, "bob")
    clock.t += 10
    # an approval record that claims not to be fast: the timestamps in the chain say otherwise
    reviews.audit.append("review.approve", "rita", {"model": model_name, "version": 1, "fast_approval": False})
    st = reviews.state(model_name, 1)
    assert st.approved and any("fast approval by rita" in f for f in st.flags)
