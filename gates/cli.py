"""Entry points of the offline `shadowlane` subcommands (mapped in shadowlane/cli.py).

Each `*_main(argv) -> int` returns 0 on success, 1 when a rule refused the action or a check
failed (so CI can gate on it), 2 for usage errors. Registry and audit defaults:
``--registry-uri`` falls back to $MLFLOW_TRACKING_URI, then ``sqlite:///mlflow.db``;
``--audit-log`` falls back to $SHADOWLANE_AUDIT_LOG, then ``audit.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

DEFAULT_AUDIT_LOG = "audit.jsonl"


# ------------------------------------------------------------------ shared


def _registry_arg(p: argparse.ArgumentParser, flag: str = "--registry-uri") -> None:
    p.add_argument(flag, default=os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db",
                   help="MLflow tracking/registry URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")


def _audit_arg(p: argparse.ArgumentParser, flag: str = "--audit-log") -> None:
    p.add_argument(flag, default=os.environ.get("SHADOWLANE_AUDIT_LOG") or DEFAULT_AUDIT_LOG,
                   help="hash-chained audit log (default: $SHADOWLANE_AUDIT_LOG or audit.jsonl)")


def _model_args(p: argparse.ArgumentParser, *, version: bool = True, actor: bool = True) -> None:
    p.add_argument("--model", required=True, help="registered model name")
    if version:
        p.add_argument("--version", required=True, type=int, help="model version number")
    if actor:
        p.add_argument("--actor", required=True, help="who is acting (recorded in the audit log)")


def _run(fn: Callable[[], int]) -> int:
    """Turn refusals into one clear line on stderr and exit 1 (no traceback for expected errors)."""
    from gates.audit import AuditError
    from gates.lifecycle import PromotionError
    from gates.pin import PinError
    from gates.registry import RegistryError
    from gates.review import ReviewError
    from proxy.config import ConfigError

    try:
        return fn()
    except (AuditError, PromotionError, PinError, RegistryError, ReviewError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def quiet_mlflow() -> None:
    """MLflow at WARNING and without artifact progress bars: the command's own output is what people read."""
    # MLflow logs INFO on every sqlite open and resets its logger on import, so import it first.
    import logging

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow  # noqa: F401

    logging.getLogger("mlflow").setLevel(logging.WARNING)


# ------------------------------------------------------------------ pin


def pin_main(argv: list[str]) -> int:
    """`shadowlane pin --config deploy.yaml [--out pinned.yaml]`."""
    p = argparse.ArgumentParser(prog="shadowlane pin", description=(
        "Resolve registry aliases (version: \"@production\") in a deployment config to version "
        "numbers and write a config the proxy accepts (stdout unless --out)."))
    p.add_argument("--config", required=True, help="deployment config, may use version: \"@alias\"")
    p.add_argument("--out", help="where to write the pinned config (default: stdout)")
    _registry_arg(p)
    args = p.parse_args(argv)
    quiet_mlflow()

    def go() -> int:
        from gates.pin import pin_file
        from gates.registry import connect

        text, _, pins = pin_file(args.config, connect(args.registry_uri), registry_uri=args.registry_uri,
                                 out=args.out)
        if args.out:
            for pin in pins:
                print(f"models.{pin.key}: {pin.name} {pin.ref} -> version {pin.version}")
            print(f"wrote {args.out} (validated with the proxy's config parser)")
        else:
            sys.stdout.write(text)
        return 0

    return _run(go)


# ------------------------------------------------------------------ audit


def audit_main(argv: list[str]) -> int:
    """`shadowlane audit verify|show --log audit.jsonl`."""
    p = argparse.ArgumentParser(prog="shadowlane audit", description="verify or show the audit log")
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify", help="check the hash chain; exit 1 naming the first bad seq")
    _audit_arg(v, "--log")
    v.add_argument("--expect-head", help="hash the last record must have (catches records cut off the end)")
    s = sub.add_parser("show", help="print records (filters optional)")
    _audit_arg(s, "--log")
    s.add_argument("--model")
    s.add_argument("--version", type=int)
    s.add_argument("--kind", help="e.g. promote, review.approve, gate.run")
    s.add_argument("--last", type=int, help="only the last N matching records")
    s.add_argument("--json", action="store_true", help="raw JSON lines")
    args = p.parse_args(argv)

    def go() -> int:
        from gates.audit import AuditLog

        log = AuditLog(args.log)
        if args.cmd == "verify":
            res = log.verify(expect_head=args.expect_head)
            if res.ok:
                print(f"ok: {res.records} records, chain intact, head {res.head_hash}")
                return 0
            print(f"FAILED: {args.log} has {len(res.problems)} problem(s) in {res.records} records:", file=sys.stderr)
            for prob in res.problems:
                print(f"  {prob}", file=sys.stderr)
            return 1
        recs = [r for r in log.records()
                if (args.model is None or r["payload"].get("model") == args.model)
                and (args.version is None or str(r["payload"].get("version")) == str(args.version))
                and (args.kind is None or r["kind"] == args.kind)]
        if args.last:
            recs = recs[-args.last:]
        for r in recs:
            if args.json:
                print(json.dumps(r, sort_keys=True))
            else:
                print(_format_record(r))
        return 0

    return _run(go)


def _format_record(r: dict[str, Any]) -> str:
    p = r["payload"]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["ts"]))
    target = f"{p.get('model', '')} v{p.get('version', p.get('to_version', ''))}".strip()
    detail = {k: v for k, v in p.items() if k not in ("model", "version") and v not in (None, [], {})}
    return f"#{r['seq']:<4} {when}Z  {r['kind']:<15} {r['actor']:<12} {target:<20} {json.dumps(detail, default=str)}"


# ------------------------------------------------------------------ review


_FLAG_ITEMS = {
    "model_card_reviewed": "--model-card-reviewed",
    "disaggregated_results_checked": "--disaggregated-results-checked",
    "known_limitations_acknowledged": "--known-limitations-acknowledged",
    "oncall_in_place": "--oncall-in-place",
}


def review_main(argv: list[str]) -> int:
    """`shadowlane review request|approve|reject|status --model M --version V --actor WHO`."""
    from gates.review import CHECKLIST

    p = argparse.ArgumentParser(prog="shadowlane review", description="human review before Production")
    sub = p.add_subparsers(dest="cmd", required=True)
    req = sub.add_parser("request", help="ask for a review of a version")
    app = sub.add_parser("approve", help="approve, answering the checklist (all must be yes)")
    rej = sub.add_parser("reject", help="reject the open review")
    st = sub.add_parser("status", help="print the review state")
    for sp in (req, app, rej):
        _model_args(sp)
        _registry_arg(sp)
        _audit_arg(sp)
    _model_args(st, actor=False)
    _registry_arg(st)
    _audit_arg(st)
    req.add_argument("--note")
    app.add_argument("--note")
    for key, flag in _FLAG_ITEMS.items():
        app.add_argument(flag, dest=key, action="store_true", help=f"answer yes: {CHECKLIST[key]}")
    app.add_argument("--answers", help="YAML/JSON file mapping checklist items to yes/no")
    rej.add_argument("--reason", required=True)
    args = p.parse_args(argv)
    quiet_mlflow()

    def go() -> int:
        from gates.audit import AuditLog
        from gates.registry import connect
        from gates.review import Reviews

        reviews = Reviews(connect(args.registry_uri), AuditLog(args.audit_log))
        if args.cmd == "request":
            rec = reviews.request(args.model, args.version, args.actor, note=args.note)
            print(f"review requested for {args.model} v{args.version} (audit seq {rec['seq']}); "
                  f"needs {rec['payload']['required_approvals']} approval(s)")
        elif args.cmd == "approve":
            answers = _answers(args)
            rec = reviews.approve(args.model, args.version, args.actor, answers, note=args.note)
            pl = rec["payload"]
            print(f"approved by {args.actor}: {pl['approvals']} of {pl['required_approvals']} approval(s) "
                  f"(audit seq {rec['seq']})")
            if pl["fast_approval"]:
                print(f"flagged: approved {pl['seconds_since_request']:.0f}s after the request "
                      "(under 60 s), recorded for audit")
        elif args.cmd == "reject":
            rec = reviews.reject(args.model, args.version, args.actor, reason=args.reason)
            print(f"rejected by {args.actor} (audit seq {rec['seq']})")
        else:
            s = reviews.state(args.model, args.version)
            print(f"{args.model} v{args.version}: {s.status}; approvers {s.approvers or '-'} "
                  f"({len(s.approvers)}/{s.required_approvals}); requested by {s.requested_by or '-'}"
                  + (f"; flags: {'; '.join(s.flags)}" if s.flags else ""))
        return 0

    return _run(go)


def _answers(args: argparse.Namespace) -> dict[str, Any]:
    from gates.review import ReviewError

    answers: dict[str, Any] = {}
    if args.answers:
        import yaml

        try:
            loaded = yaml.safe_load(Path(args.answers).read_text())
        except (OSError, yaml.YAMLError) as err:
            raise ReviewError(f"cannot read answers file {args.answers}: {err}") from None
        if not isinstance(loaded, dict):
            raise ReviewError(f"answers file {args.answers} must map checklist items to yes/no")
        answers.update(loaded)
    for key in _FLAG_ITEMS:
        if getattr(args, key):
            answers[key] = "yes"
    return answers


# ------------------------------------------------------------------ promote


def promote_main(argv: list[str]) -> int:
    """`shadowlane promote --model M --version V --to staging|production|archived --actor WHO`."""
    p = argparse.ArgumentParser(prog="shadowlane promote", description=(
        "Move a version along None → Staging → Production → Archived (gate verdict and review "
        "enforced), or --rollback Production to the previous Production version."))
    p.add_argument("--model", required=True)
    p.add_argument("--version", type=int)
    p.add_argument("--to", choices=["staging", "production", "archived"])
    p.add_argument("--rollback", action="store_true", help="restore the previous Production version")
    p.add_argument("--actor", required=True)
    p.add_argument("--reason")
    _registry_arg(p)
    _audit_arg(p)
    args = p.parse_args(argv)
    if args.rollback == bool(args.to or args.version):
        p.error("give either --version and --to, or --rollback")
    if not args.rollback and not (args.to and args.version):
        p.error("--version and --to go together")
    quiet_mlflow()

    def go() -> int:
        from gates.audit import AuditLog
        from gates.lifecycle import Lifecycle
        from gates.registry import connect

        lc = Lifecycle(connect(args.registry_uri), AuditLog(args.audit_log))
        if args.rollback:
            t = lc.rollback(args.model, args.actor, reason=args.reason or "")
            print(f"rolled back {args.model}: Production is v{t.version} again, v{t.archived} archived "
                  f"(audit seq {t.audit_seq})")
        else:
            t = lc.promote(args.model, args.version, args.to, args.actor, reason=args.reason)
            extra = f"; v{t.archived} archived" if t.archived else ""
            print(f"{args.model} v{t.version}: {t.from_stage} → {t.to_stage}{extra} (audit seq {t.audit_seq})")
        return 0

    return _run(go)


# ------------------------------------------------------------------ registry


def registry_main(argv: list[str]) -> int:
    """`shadowlane registry copy|register|record-gate|show`."""
    p = argparse.ArgumentParser(prog="shadowlane registry", description="model registry operations")
    sub = p.add_subparsers(dest="cmd", required=True)
    cp = sub.add_parser("copy", help="copy a version to another registry with provenance tags")
    cp.add_argument("--src-uri", required=True)
    cp.add_argument("--dst-uri", required=True)
    cp.add_argument("--model", required=True)
    cp.add_argument("--version", required=True, type=int)
    cp.add_argument("--dst-model", help="name in the destination (default: the same)")
    cp.add_argument("--actor", default=os.environ.get("USER") or "unknown",
                    help="recorded as provenance.copied_by (default: $USER)")
    cp.add_argument("--audit-log", help="also append a registry.copy record here")

    rg = sub.add_parser("register", help="log an ONNX model with its signature as a new version")
    rg.add_argument("--model", required=True)
    rg.add_argument("--onnx", required=True, help="ONNX model file")
    rg.add_argument("--author", required=True, help="who built it (may not approve it)")
    rg.add_argument("--feature-names", help="comma-separated column names of the single 2-D input")
    rg.add_argument("--training-data", help=".npy array of training rows, for drift statistics")
    rg.add_argument("--high-stakes", action="store_true", help="promotion needs two reviewers")
    _registry_arg(rg)
    _audit_arg(rg)

    rec = sub.add_parser("record-gate", help="write a gate evaluation JSON onto a version as tags")
    rec.add_argument("--model", required=True)
    rec.add_argument("--version", required=True, type=int)
    rec.add_argument("--evaluation", required=True, help="JSON written by `shadowlane gate --json`")
    rec.add_argument("--actor", default="shadowlane-gate")
    _registry_arg(rec)
    _audit_arg(rec)

    sh = sub.add_parser("show", help="print a version's lifecycle, gate and review tags")
    sh.add_argument("--model", required=True)
    sh.add_argument("--version", required=True, type=int)
    _registry_arg(sh)
    args = p.parse_args(argv)
    quiet_mlflow()

    def go() -> int:
        from gates.audit import AuditLog
        from gates import registry as reg

        if args.cmd == "copy":
            from gates.copy import copy_version

            res = copy_version(reg.connect(args.src_uri), reg.connect(args.dst_uri), args.model, args.version,
                               actor=args.actor, dst_name=args.dst_model,
                               audit=AuditLog(args.audit_log) if args.audit_log else None)
            print(f"copied {args.model} v{args.version} -> {res.name} v{res.version} "
                  f"(artifacts {res.artifacts_sha256[:19]}…, {len(res.tags)} tags)")
        elif args.cmd == "register":
            import numpy as np
            import onnx

            from gates.drift_stats import training_stats

            names = [n.strip() for n in args.feature_names.split(",")] if args.feature_names else None
            stats = None
            if args.training_data:
                if not names:
                    raise reg.RegistryError("--training-data needs --feature-names")
                stats = training_stats(np.load(args.training_data), names)
            client = reg.connect(args.registry_uri)
            mv = reg.register_onnx(client, args.model, onnx.load(args.onnx), author=args.author,
                                   feature_names=names, training_stats=stats, high_stakes=args.high_stakes)
            AuditLog(args.audit_log).append("register", args.author, {
                "model": args.model, "version": int(mv.version), "source": mv.source,
                "model_sha256": mv.tags.get("model_sha256"), "high_stakes": args.high_stakes})
            print(f"registered {args.model} v{mv.version} (stage None)")
        elif args.cmd == "record-gate":
            try:
                evaluation = json.loads(Path(args.evaluation).read_text())
            except (OSError, ValueError) as err:
                raise reg.RegistryError(f"cannot read evaluation {args.evaluation}: {err}") from None
            tags = reg.record_gate_results(reg.connect(args.registry_uri), args.model, args.version, evaluation,
                                           audit=AuditLog(args.audit_log), actor=args.actor)
            print(f"{args.model} v{args.version}: gate.verdict={tags['gate.verdict']} ({len(tags)} tags)")
        else:
            mv = reg.get_version(reg.connect(args.registry_uri), args.model, args.version)
            for k in sorted(mv.tags):
                if k != "training_stats":
                    print(f"{k} = {mv.tags[k]}")
        return 0

    return _run(go)
