"""Human review of a model version before Production: request, approve (with a checklist), reject.

The audit log is the source of truth: the review state of a version is read from its verified
chain (the latest ``review.request`` for that version and what follows it), so editing a registry
tag cannot approve a model. ``review.*`` version tags mirror the state for people browsing MLflow.

Rules enforced here:
- an approval answers every checklist item with "yes";
- the author (``author`` tag, the MLflow user who created the version) and whoever requested the
  review cannot approve;
- high-stakes models (``high_stakes=true`` on the registered model or version) need two distinct
  approvers;
- an approval less than `FAST_APPROVAL_S` after the request is allowed but flagged in its record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from mlflow import MlflowClient

from gates.audit import AuditError, AuditLog
from gates.registry import RegistryError, get_version, is_high_stakes, production_snapshot

FAST_APPROVAL_S = 60.0

CHECKLIST: dict[str, str] = {
    "model_card_reviewed": "I have read the model card (intended use, training data, owners).",
    "disaggregated_results_checked": "I checked the per-segment (disaggregated) gate results.",
    "known_limitations_acknowledged": "I acknowledge the known limitations listed for this model.",
    "oncall_in_place": "An on-call owner is in place for this model in production.",
}

_YES = {"yes", "y", "true", "1"}
_NO = {"no", "n", "false", "0", ""}


class ReviewError(RuntimeError):
    """A review action was refused; the message says which rule and for whom."""


@dataclass
class ReviewState:
    """Where a version's review stands, as read from the audit log."""

    status: str = "none"  # none | requested | approved | rejected
    request_seq: int | None = None
    requested_by: str | None = None
    requested_at: float | None = None
    evaluation_sha256: str | None = None  # the gate evaluation the reviewers were asked to judge
    approvers: list[str] = field(default_factory=list)
    rejected_by: str | None = None
    required_approvals: int = 1
    flags: list[str] = field(default_factory=list)

    @property
    def approved(self) -> bool:
        return self.status == "approved"


def parse_answers(answers: Mapping[str, Any]) -> dict[str, bool]:
    """Checklist answers as booleans; unknown items are an error (a typo must not count as yes)."""
    unknown = sorted(set(answers) - set(CHECKLIST))
    if unknown:
        raise ReviewError(f"unknown checklist items {unknown}; the checklist is {sorted(CHECKLIST)}")
    out = {}
    for key, v in answers.items():
        text = str(v).strip().lower() if not isinstance(v, bool) else ("yes" if v else "no")
        if text in _YES:
            out[key] = True
        elif text in _NO:
            out[key] = False
        else:
            raise ReviewError(f"checklist item {key}: answer {v!r} is not yes or no")
    return out


def authors_of(client: MlflowClient, name: str, version: int | str) -> set[str]:
    """Everyone who counts as the version's author: the ``author`` tag and the MLflow creator."""
    mv = get_version(client, name, version)
    names = {mv.tags.get("author"), mv.user_id or None}
    return {_who(n) for n in names if n and n.strip()}


def review_state(audit: AuditLog, name: str, version: int | str, *, required_approvals: int = 1,
                 ineligible: Iterable[str] = ()) -> ReviewState:
    """The review state of (name, version) from a verified audit log.

    The rules are applied again here, not only when approving: an approval record by the requester
    or by anyone in `ineligible` (the authors) does not count, whoever appended it. Raises
    AuditError if the log's chain does not verify: a tampered log cannot approve anything.
    """
    barred = {_who(a) for a in ineligible}
    state = ReviewState(required_approvals=required_approvals)
    if not audit.path.exists():
        return state
    check = audit.verify()
    if not check.ok:
        raise AuditError(f"audit log {audit.path} failed verification ({check.problems[0]}); "
                         "review state cannot be trusted")
    for rec in audit.records():
        p = rec.get("payload", {})
        if p.get("model") != name or str(p.get("version")) != str(version):
            continue
        kind = rec["kind"]
        if kind == "review.request":
            state = ReviewState(status="requested", request_seq=rec["seq"], requested_by=rec["actor"],
                                requested_at=rec["ts"], evaluation_sha256=p.get("evaluation_sha256"),
                                required_approvals=required_approvals)
        elif kind == "review.approve" and state.status in ("requested", "approved"):
            who = _who(rec["actor"])
            if who in barred or who == _who(state.requested_by or ""):
                state.flags.append(f"approval by {rec['actor']} (seq {rec['seq']}) ignored: author or requester")
                continue
            if who not in (_who(a) for a in state.approvers):
                state.approvers.append(rec["actor"])
            # from the chained timestamps too, not only the flag the approving code wrote
            if p.get("fast_approval") or rec["ts"] - (state.requested_at or rec["ts"]) < FAST_APPROVAL_S:
                state.flags.append(f"fast approval by {rec['actor']} (seq {rec['seq']})")
            if len(state.approvers) >= required_approvals:
                state.status = "approved"
        elif kind == "review.reject" and state.status != "none":
            state.status, state.rejected_by = "rejected", rec["actor"]
    return state


class Reviews:
    """Review actions for one registry and one audit log."""

    def __init__(self, client: MlflowClient, audit: AuditLog, *, clock: Callable[[], float] | None = None):
        self.client = client
        self.audit = audit
        self.clock = clock or audit.clock

    def state(self, name: str, version: int | str) -> ReviewState:
        required = 2 if is_high_stakes(self.client, name, version) else 1
        return review_state(self.audit, name, version, required_approvals=required,
                            ineligible=authors_of(self.client, name, version))

    def request(self, name: str, version: int | str, actor: str, *, note: str | None = None) -> dict[str, Any]:
        """Open (or re-open) a review of the version; earlier approvals no longer count."""
        mv = get_version(self.client, name, version)
        _need_actor(actor)
        st = self.state(name, version)
        rec = self.audit.append("review.request", actor, {
            "model": name, "version": int(version), "note": note,
            "stage": mv.tags.get("lifecycle.stage", "None"),
            "gate_verdict": mv.tags.get("gate.verdict"),
            "evaluation_sha256": mv.tags.get("gate.evaluation_sha256"),
            "data_version": mv.tags.get("gate.data_version"),
            "required_approvals": st.required_approvals,
            "supersedes_request_seq": st.request_seq,
            "production": production_snapshot(self.client, name),
        })
        self._mirror(name, version, {"review.status": "requested", "review.requested_by": actor,
                                     "review.request_seq": str(rec["seq"]), "review.approvers": "",
                                     "review.flags": ""})
        return rec

    def approve(self, name: str, version: int | str, actor: str, answers: Mapping[str, Any], *,
                note: str | None = None) -> dict[str, Any]:
        """Approve after a request; refuses authors, incomplete checklists and repeat approvers."""
        _need_actor(actor)
        st = self.state(name, version)
        if st.status == "none":
            raise ReviewError(f"{name} v{version}: no review was requested; run `shadowlane review request` first")
        if st.status == "rejected":
            raise ReviewError(f"{name} v{version}: the review was rejected by {st.rejected_by}; "
                              "a new review request is needed")
        who = _who(actor)
        if who in authors_of(self.client, name, version):
            raise ReviewError(f"{actor} is the author of {name} v{version} and cannot approve it")
        if st.requested_by and who == _who(st.requested_by):
            raise ReviewError(f"{actor} requested the review of {name} v{version} and cannot approve it")
        if who in (_who(a) for a in st.approvers):
            raise ReviewError(f"{actor} already approved {name} v{version}; "
                              f"{st.required_approvals} distinct reviewers are needed")
        parsed = parse_answers(answers)
        missing = [k for k in CHECKLIST if k not in parsed]
        declined = [k for k in CHECKLIST if parsed.get(k) is False]
        if missing or declined:
            parts = ([f"unanswered: {', '.join(missing)}"] if missing else []) + \
                    ([f"answered no: {', '.join(declined)}"] if declined else [])
            raise ReviewError(f"approval of {name} v{version} refused: every checklist item must be "
                              f"answered yes ({'; '.join(parts)})")
        now = self.clock()
        elapsed = now - (st.requested_at or now)
        fast = elapsed < FAST_APPROVAL_S
        approvers = st.approvers + [actor]
        mv = get_version(self.client, name, version)
        rec = self.audit.append("review.approve", actor, {
            "model": name, "version": int(version), "checklist": parsed, "note": note,
            "request_seq": st.request_seq, "requested_by": st.requested_by,
            "seconds_since_request": round(elapsed, 3), "fast_approval": fast,
            "approvals": len(approvers), "required_approvals": st.required_approvals,
            "high_stakes": st.required_approvals > 1,
            "evaluation_sha256": mv.tags.get("gate.evaluation_sha256"),
            "data_version": mv.tags.get("gate.data_version"),
            "production": production_snapshot(self.client, name),
        })
        flags = st.flags + ([f"fast approval by {actor} ({elapsed:.0f}s after request)"] if fast else [])
        self._mirror(name, version, {
            "review.status": "approved" if len(approvers) >= st.required_approvals else "requested",
            "review.approvers": ",".join(approvers), "review.flags": "; ".join(flags)})
        return rec

    def reject(self, name: str, version: int | str, actor: str, *, reason: str) -> dict[str, Any]:
        """Reject the open review; promotion stays blocked until a new request is approved."""
        _need_actor(actor)
        if not reason:
            raise ReviewError("a rejection needs a reason")
        st = self.state(name, version)
        if st.status == "none":
            raise ReviewError(f"{name} v{version}: no review was requested")
        mv = get_version(self.client, name, version)
        rec = self.audit.append("review.reject", actor, {
            "model": name, "version": int(version), "reason": reason, "request_seq": st.request_seq,
            "evaluation_sha256": mv.tags.get("gate.evaluation_sha256"),
            "data_version": mv.tags.get("gate.data_version"),
            "production": production_snapshot(self.client, name)})
        self._mirror(name, version, {"review.status": "rejected", "review.rejected_by": actor})
        return rec

    def _mirror(self, name: str, version: int | str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_model_version_tag(name, str(version), k, v)


def _who(actor: str) -> str:
    """People compare by name, ignoring case and surrounding spaces."""
    return actor.strip().lower()


def _need_actor(actor: str) -> None:
    if not actor or not actor.strip():
        raise ReviewError("--actor (who is acting) is required")


__all__ = ["CHECKLIST", "FAST_APPROVAL_S", "ReviewError", "ReviewState", "Reviews", "RegistryError",
           "parse_answers", "review_state"]
