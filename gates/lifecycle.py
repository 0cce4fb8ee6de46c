"""The model-version lifecycle None → Staging → Production → Archived, on aliases and tags.

MLflow stages are deprecated, so the stage is the ``lifecycle.stage`` version tag and the
``production`` alias points at the one Production version and ``staging`` at the latest version
promoted to Staging (several may wait there). Rules:

- None → Staging needs a passing gate verdict (``gate.verdict == pass``);
- the passing verdict must match the version's last ``gate.run`` record in the verified audit log
  (tags alone are not trusted);
- Staging → Production needs a passing verdict *and* an approved review (read from the verified
  audit log) of those same gate results; the previous Production version becomes Archived;
- None → Production is refused; anything → Archived is allowed except the serving Production
  version (promote or roll back another version instead);
- rollback puts the previous Production version back and archives the current one.
Every transition is appended to the audit log with the production model's metrics at the time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from gates.audit import AuditError, AuditLog
from gates.registry import RegistryError, get_version, production_snapshot
from gates.review import Reviews

STAGES = ("None", "Staging", "Production", "Archived")
ALIASES = {"Staging": "staging", "Production": "production"}
ALLOWED = {
    ("None", "Staging"), ("Archived", "Staging"),
    ("Staging", "Production"),
    ("None", "Archived"), ("Staging", "Archived"), ("Production", "Archived"),
}
HISTORY_TAG = "lifecycle.production_history"  # registered-model tag: JSON list of versions
HISTORY_KEEP = 50


class PromotionError(RuntimeError):
    """A lifecycle transition was refused; the message names the version, the rule and the fix."""


@dataclass(frozen=True)
class Transition:
    model: str
    version: int
    from_stage: str
    to_stage: str
    archived: int | None  # the Production version this replaced, if any
    audit_seq: int


def stage_of(client: MlflowClient, name: str, version: int | str) -> str:
    return get_version(client, name, version).tags.get("lifecycle.stage", "None")


def normalize_stage(stage: str) -> str:
    for s in STAGES:
        if stage.strip().lower() == s.lower():
            return s
    raise PromotionError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES[1:])}")


class Lifecycle:
    """Lifecycle transitions for one registry and one audit log."""

    def __init__(self, client: MlflowClient, audit: AuditLog, *, clock: Callable[[], float] | None = None):
        self.client = client
        self.audit = audit
        self.clock = clock or audit.clock
        self.reviews = Reviews(client, audit, clock=self.clock)

    def promote(self, name: str, version: int | str, to: str, actor: str, *, reason: str | None = None) -> Transition:
        """Move `version` to stage `to`, enforcing the rules in the module docstring."""
        if not actor:
            raise PromotionError("--actor (who is promoting) is required")
        to = normalize_stage(to)
        mv = get_version(self.client, name, version)
        current = mv.tags.get("lifecycle.stage", "None")
        if current == to:
            raise PromotionError(f"{name} v{version} is already in {to}")
        if (current, to) == ("None", "Production"):
            raise PromotionError(f"refused: {name} v{version} cannot go from None straight to Production; "
                                 "it must pass the gates into Staging and be reviewed first")
        if (current, to) not in ALLOWED:
            raise PromotionError(f"refused: {current} → {to} is not a lifecycle transition "
                                 f"(allowed: {', '.join(f'{a}→{b}' for a, b in sorted(ALLOWED))}; "
                                 "use rollback to restore an archived Production version)")
        verdict = mv.tags.get("gate.verdict")
        review = None
        if to in ("Staging", "Production") and verdict != "pass":
            raise PromotionError(f"refused: {name} v{version} → {to} needs a passing gate verdict, "
                                 f"it has {verdict or 'no gate results'}"
                                 + _failed_gates(mv.tags))
        if to in ("Staging", "Production"):
            self._check_gate_run(name, version, mv.tags.get("gate.evaluation_sha256"))
        if to == "Production":
            review = self.reviews.state(name, version)
            if not review.approved:
                have = f"{len(review.approvers)} of {review.required_approvals} approvals"
                raise PromotionError(f"refused: {name} v{version} → Production needs an approved review "
                                     f"(review is {review.status}, {have})")
            if review.evaluation_sha256 != mv.tags.get("gate.evaluation_sha256"):
                raise PromotionError(f"refused: the gate results of {name} v{version} changed after its review "
                                     "was requested; request (and approve) a review of the current results")
        if to == "Archived" and self._alias(name, "production") == int(version):
            raise PromotionError(f"refused: {name} v{version} is serving as Production; promote another "
                                 "version or roll back instead of archiving it")

        production_before = production_snapshot(self.client, name)
        archived = None
        if to == "Production":
            prev = self._alias(name, "production")
            if prev is not None and prev != int(version):
                self._set_stage(name, prev, "Archived", actor, extra={"lifecycle.superseded_by": str(version)})
                archived = prev
            self._push_history(name, int(version))
        self._set_stage(name, int(version), to, actor)
        for stage, alias in ALIASES.items():
            if stage == to:
                self.client.set_registered_model_alias(name, alias, str(version))
            elif self._alias(name, alias) == int(version):
                self.client.delete_registered_model_alias(name, alias)
        rec = self.audit.append("promote", actor, {
            "model": name, "version": int(version), "from": current, "to": to, "reason": reason,
            "archived_version": archived,
            "gate_verdict": verdict, "evaluation_sha256": mv.tags.get("gate.evaluation_sha256"),
            "data_version": mv.tags.get("gate.data_version"),
            "candidate_metrics": _metrics(mv.tags),
            "production": production_before,
            "reviewers": review.approvers if review else None,
            "review_request_seq": review.request_seq if review else None,
            "review_flags": review.flags if review else None,
        })
        self.client.set_model_version_tag(name, str(version), "lifecycle.audit_seq", str(rec["seq"]))
        return Transition(name, int(version), current, to, archived, rec["seq"])

    def rollback(self, name: str, actor: str, *, reason: str) -> Transition:
        """Restore the previous Production version; the current one becomes Archived."""
        if not actor:
            raise PromotionError("--actor (who is rolling back) is required")
        if not reason:
            raise PromotionError("a rollback needs a --reason")
        current = self._alias(name, "production")
        if current is None:
            raise PromotionError(f"refused: {name} has no Production version to roll back")
        history = [v for v in self._history(name) if v != current]
        if not history:
            raise PromotionError(f"refused: {name} has no earlier Production version to roll back to")
        target = history[-1]
        production_before = production_snapshot(self.client, name)
        self._set_stage(name, current, "Archived", actor, extra={"lifecycle.rolled_back": "true"})
        self._set_stage(name, target, "Production", actor)
        self.client.set_registered_model_alias(name, "production", str(target))
        self._set_history(name, [v for v in self._history(name) if v != current])
        rec = self.audit.append("rollback", actor, {
            "model": name, "from_version": current, "to_version": target, "reason": reason,
            "production": production_before,
        })
        return Transition(name, target, "Archived", "Production", current, rec["seq"])

    # ------------------------------------------------------------ helpers

    def _check_gate_run(self, name: str, version: int | str, digest: str | None) -> None:
        """The passing verdict on the tags must be the last gate run in the verified audit log.

        Tags are writable by anyone with registry access; the hash-chained log is what vouches
        for them.
        """
        last = None
        if self.audit.path.exists():
            check = self.audit.verify()
            if not check.ok:
                raise AuditError(f"audit log {self.audit.path} failed verification ({check.problems[0]}); "
                                 "no promotion until it is restored")
            for rec in self.audit.records():
                p = rec["payload"]
                if rec["kind"] == "gate.run" and p.get("model") == name and str(p.get("version")) == str(version):
                    last = p
        if last is None or last.get("evaluation_sha256") != digest or last.get("verdict") != "pass":
            raise PromotionError(f"refused: the passing gate verdict on {name} v{version} is not backed by its "
                                 f"last gate.run record in {self.audit.path} (record gate results with this "
                                 "audit log: `shadowlane gate --record` or `registry record-gate`)")

    def _alias(self, name: str, alias: str) -> int | None:
        try:
            v = self.client.get_registered_model(name).aliases.get(alias)
        except MlflowException as err:
            raise RegistryError(f"registered model {name!r} not found: {err.message}") from None
        return int(v) if v is not None else None

    def _set_stage(self, name: str, version: int, stage: str, actor: str, extra: dict[str, str] | None = None) -> None:
        tags = {"lifecycle.stage": stage, "lifecycle.updated_by": actor,
                "lifecycle.updated_at": f"{self.clock():.3f}", **(extra or {})}
        for k, v in tags.items():
            self.client.set_model_version_tag(name, str(version), k, v)

    def _history(self, name: str) -> list[int]:
        raw = self.client.get_registered_model(name).tags.get(HISTORY_TAG)
        return [int(v) for v in json.loads(raw)] if raw else []

    def _set_history(self, name: str, versions: list[int]) -> None:
        self.client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(versions[-HISTORY_KEEP:]))

    def _push_history(self, name: str, version: int) -> None:
        self._set_history(name, [v for v in self._history(name) if v != version] + [version])


def _metrics(tags: dict[str, str]) -> dict[str, float]:
    out = {}
    for k, v in tags.items():
        if k.startswith("metric."):
            try:
                out[k.removeprefix("metric.")] = float(v)
            except ValueError:
                pass
    return out


def _failed_gates(tags: dict[str, str]) -> str:
    failed = [k[len("gate."):-len(".passed")] for k, v in tags.items()
              if k.startswith("gate.") and k.endswith(".passed") and v != "true"]
    if not failed:
        return ""
    first = failed[0]
    return f" (failed: {', '.join(sorted(failed))}; {first}: {tags.get(f'gate.{first}.reason', '')})"


__all__ = ["ALLOWED", "Lifecycle", "PromotionError", "STAGES", "Transition", "stage_of"]
