"""`shadowlane gate`: evaluate the promotion gates of one candidate over a shadow log.

Exit codes: 0 every gate passed, 1 a gate failed, 3 insufficient evidence, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gates.evaluate import Evaluation
    from gates.gate_config import GateConfig

USAGE_ERROR = 2


def _candidate(text: str) -> tuple[str, int]:
    name, sep, version = text.rpartition(":")
    if not sep or not name or not version.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME:VERSION (a pinned version number, e.g. credit-risk:3)")
    return name, int(version)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shadowlane gate",
        description="Evaluate the five promotion gates (accuracy, latency, fairness, drift, schema) and any "
                    "plugin gates for a candidate over a shadow log. Exit 0 pass, 1 fail, 3 insufficient evidence.")
    p.add_argument("--log", required=True, help="segment directory, JSONL file, or kafka://host:port/topic?start_ts=..")
    p.add_argument("--labels", help="label JSON lines {request_id, row, label, ts}: file or kafka:// URI")
    p.add_argument("--config", help="gate config, YAML or TOML (default: built-in thresholds)")
    p.add_argument("--candidate", required=True, type=_candidate, help="NAME:VERSION of the shadowed candidate")
    p.add_argument("--signature", help="candidate's MLflow signature as JSON (ModelSignature.to_dict())")
    p.add_argument("--training-stats", help="candidate's training statistics JSON (gates.drift_stats.training_stats)")
    p.add_argument("--json", dest="json_out", help="write the evaluation as JSON here ('-' for stdout)")
    p.add_argument("--report", help="write the HTML report here")
    p.add_argument("--include-open", action="store_true", help="also read the segment being written")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--registry-uri", help="MLflow registry: read the candidate's signature and training "
                   "statistics from it when not given as files")
    p.add_argument("--record", action="store_true", help="write the results as model-version tags and append "
                   "a gate.run record to the audit log (needs --registry-uri)")
    p.add_argument("--audit-log", default=os.environ.get("SHADOWLANE_AUDIT_LOG") or "audit.jsonl",
                   help="audit log for --record (default: $SHADOWLANE_AUDIT_LOG or audit.jsonl)")
    p.add_argument("--actor", default=os.environ.get("USER") or "shadowlane-gate", help="who ran the gate (audit)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from gates.gate_config import GateConfigError, load_config, parse_config
    from gates.reader import ReadError

    name, version = args.candidate
    try:
        cfg = load_config(args.config) if args.config else parse_config({})
        signature, stats = args.signature, args.training_stats
        client = None
        if args.record and not args.registry_uri:
            print("error: --record needs --registry-uri", file=sys.stderr)
            return USAGE_ERROR
        if args.registry_uri:
            client, signature, stats = _from_registry(args.registry_uri, name, version, signature, stats, cfg)
        from gates.evaluate import evaluate

        ev = evaluate(args.log, candidate=(name, version), config=cfg, labels=args.labels, signature=signature,
                      training_stats=stats, include_open=args.include_open,
                      progress=not args.no_progress and sys.stderr.isatty())
    except (GateConfigError, ReadError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return USAGE_ERROR

    from gates.report import html_report, text_table

    print(text_table(ev))
    if args.json_out == "-":
        print(ev.to_json())
    elif args.json_out:
        Path(args.json_out).write_text(ev.to_json())
    if args.report:
        Path(args.report).write_text(html_report(ev))
    if args.record and client is not None:
        _record(client, ev, args)
    return ev.exit_code


def _from_registry(uri: str, name: str, version: int, signature: Any, stats: Any,
                   cfg: "GateConfig") -> tuple[Any, Any, Any]:
    """The registry client, and the signature / training statistics it stores for the version when the
    command line and config did not give them."""
    try:
        from gates import registry
    except ImportError as err:  # the registry half is optional for a plain gate run
        raise ValueError(f"--registry-uri needs gates.registry: {err}") from None
    client = registry.connect(uri)
    if signature is None and cfg.schema_.signature is None:
        signature = registry.load_signature(client, name, version)
    if stats is None and cfg.drift.training_stats is None:
        stats = registry.load_training_stats(client, name, version)
    return client, signature, stats


def _record(client: Any, ev: "Evaluation", args: argparse.Namespace) -> None:
    from gates import registry
    from gates.audit import AuditLog

    name, version = args.candidate
    registry.record_gate_results(client, name, version, ev.to_dict(), audit=AuditLog(args.audit_log),
                                 actor=args.actor, data_version=ev.data_version)
    print(f"recorded gate results on {name} v{version}; audit log {args.audit_log}")
