"""One gate run: read the log and labels, check the evidence, run every gate, summarise.

`evaluate(...)` is the library entry point (the CLI and the registry/audit code call it);
its `Evaluation.verdict` is "pass", "fail" or "insufficient_evidence".
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from xxhash import xxh3_64

from gates.checks.accuracy import AccuracyGate
from gates.checks.base import Gate, GateContext, GateResult, jsonable, load_plugin
from gates.checks.drift import DriftGate
from gates.checks.evidence import check_evidence
from gates.checks.fairness import FairnessGate
from gates.checks.latency import LatencyGate
from gates.checks.schema import SchemaGate
from gates.divergence import divergence
from gates.gate_config import GateConfig, load_config, parse_config
from gates.labels import Labels, attach_labels, read_labels
from gates.reader import ShadowFrame, read_shadow_log

PASS, FAIL, INSUFFICIENT = "pass", "fail", "insufficient_evidence"
EXIT_CODES = {PASS: 0, FAIL: 1, INSUFFICIENT: 3}
BUILTIN_GATES: tuple[type, ...] = (AccuracyGate, LatencyGate, FairnessGate, DriftGate, SchemaGate)


@dataclass
class Evaluation:
    """The outcome of one gate run; `to_json()` is what the CLI writes and the audit log stores."""

    verdict: str
    candidate: tuple[str, int]
    gates: list[GateResult]
    evidence: list[GateResult]
    divergence: dict[str, Any]
    summary: dict[str, Any]
    thresholds: dict[str, Any]
    data_version: str = ""
    created_at: float = field(default_factory=time.time)
    frame: ShadowFrame | None = field(default=None, repr=False, compare=False)  # the evidence, for plots

    def compared_scores(self, limit: int = 200_000) -> tuple[np.ndarray, np.ndarray] | None:
        """(champion, candidate) scores of rows where both answered; an even subsample beyond `limit`."""
        if self.frame is None:
            return None
        r = self.frame.rows
        m = (self.frame.records.kind[r.record] == 0) & ~np.isnan(r.champion_score) & ~np.isnan(r.shadow_score)
        idx = np.flatnonzero(m)
        if idx.size > limit:
            idx = idx[:: idx.size // limit + 1]
        return r.champion_score[idx], r.shadow_score[idx]

    @property
    def passed(self) -> bool:
        return self.verdict == PASS

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def gate(self, name: str) -> GateResult:
        for g in self.gates:
            if g.name == name:
                return g
        raise KeyError(f"no gate named {name!r}; gates: {[g.name for g in self.gates]}")

    def headline_metrics(self) -> dict[str, dict[str, float]]:
        """Scalar figures per side (candidate / champion) on the same traffic, for tags and the audit log."""
        out: dict[str, dict[str, float]] = {"candidate": {}, "champion": {}}
        by_name = {g.name: g.values for g in self.gates}
        acc, lat = by_name.get("accuracy", {}), by_name.get("latency", {})
        if "auc_candidate" in acc:
            out["candidate"]["auc"] = acc["auc_candidate"]
            out["champion"]["auc"] = acc["auc_champion"]
        if "candidate_ms" in lat:
            out["candidate"][f"latency_p{lat['percentile']:g}_ms"] = lat["candidate_ms"]
            out["champion"][f"latency_p{lat['percentile']:g}_ms"] = lat["champion_ms"]
        overall = self.divergence.get("overall") or {}
        if "agreement_rate" in overall:
            out["candidate"]["agreement_rate"] = overall["agreement_rate"]
            out["candidate"]["prediction_psi"] = overall["psi"]
        return out

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "verdict": self.verdict,
            "candidate": {"name": self.candidate[0], "version": self.candidate[1]},
            "created_at": self.created_at,
            "data_version": self.data_version,
            "metrics": self.headline_metrics(),
            "gates": [g.to_dict() for g in self.gates],
            "evidence": [e.to_dict() for e in self.evidence],
            "divergence": self.divergence,
            "summary": self.summary,
            "thresholds": self.thresholds,
        })

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)


def _load_json(value: Any, what: str) -> Any:
    if value is None or isinstance(value, dict) or hasattr(value, "to_dict"):
        return value
    try:
        return json.loads(Path(value).read_text())
    except OSError as err:
        raise ValueError(f"cannot read {what} {value}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {value} is not JSON: {err}") from None


def evaluate(log: str | os.PathLike[str] | ShadowFrame | Iterable[bytes], *, candidate: tuple[str, int],
             config: GateConfig | str | os.PathLike[str] | dict[str, Any] | None = None,
             labels: str | os.PathLike[str] | Labels | Iterable[bytes] | None = None,
             signature: Any = None, training_stats: dict[str, Any] | str | os.PathLike[str] | None = None,
             extra_gates: Iterable[Gate] = (), include_open: bool = False, progress: bool = False) -> Evaluation:
    """Evaluate `candidate` = (registry name, version) over a shadow log.

    `log`: a segment directory, JSONL file, `kafka://` URI, iterable of lines, or a `ShadowFrame`.
    `labels`: the same kinds of source for label lines, or `Labels`; None = no labels (accuracy then
    lacks evidence). `signature` (ModelSignature or its dict) and `training_stats` (dict or JSON path)
    default to the paths in the config. `extra_gates` run after the configured plugins.
    """
    if isinstance(config, GateConfig):
        cfg = config
    elif isinstance(config, dict) or config is None:
        cfg = parse_config(config)
    else:
        cfg = load_config(config)
    candidate = (str(candidate[0]), int(candidate[1]))
    t0 = time.perf_counter()
    if isinstance(log, ShadowFrame):
        frame = log
    else:
        frame = read_shadow_log(log, candidate, options=cfg.read_options(), include_open=include_open,
                                progress=progress)
    t_read = time.perf_counter()
    if labels is not None and not isinstance(labels, Labels):
        labels = read_labels(labels, until_ts=cfg.window.labels_until_ts, progress=progress)
    if labels is not None:
        attach_labels(frame, labels)
    elif frame.rows.label is None:
        frame.rows.label = np.full(len(frame.rows), -1, dtype=np.int8)
    t_labels = time.perf_counter()

    ctx = GateContext(frame=frame, config=cfg,
                      signature=_load_json(signature if signature is not None else cfg.schema_.signature, "signature"),
                      training_stats=_load_json(training_stats if training_stats is not None else cfg.drift.training_stats,
                                                "training statistics"))
    evidence = check_evidence(ctx)
    results: list[GateResult] = []
    if evidence[0].passed:  # there are candidate records at all
        gates: list[Gate] = [g() for g, enabled in zip(BUILTIN_GATES, (
            cfg.accuracy.enabled, cfg.latency.enabled, cfg.fairness.enabled, cfg.drift.enabled, cfg.schema_.enabled))
            if enabled]
        gates += [load_plugin(p) for p in cfg.plugins]
        gates += list(extra_gates)
        for gate in gates:
            try:
                results.append(gate.evaluate(ctx))
            except Exception as err:  # a broken gate must block promotion, not crash the run silently
                results.append(GateResult(gate.name, False, f"gate raised {type(err).__name__}: {err}", {}))
        div = divergence(ctx)
    else:
        div = {}
    t_gates = time.perf_counter()

    if not all(e.passed for e in evidence):
        verdict = INSUFFICIENT
    elif results and all(r.passed for r in results):
        verdict = PASS
    else:
        verdict = FAIL
    rec = frame.records
    summary = {
        "lines_read": frame.lines_read, "bad_lines": frame.bad_lines, "duplicates": frame.duplicates,
        "records": len(rec), "candidate_records": int(np.count_nonzero(ctx.candidate_records)),
        "noise_records": int(np.count_nonzero(rec.kind == 1)),
        "rows": int(np.count_nonzero(ctx.candidate_rows)), "labelled_rows": int(np.count_nonzero(ctx.labelled_rows)),
        "labels_read": len(labels) if labels is not None else 0,
        "champions": [{"name": n, "version": v} for n, v in sorted(frame.champions)],
        "first_ts": float(rec.ts.min()) if len(rec) else None, "last_ts": float(rec.ts.max()) if len(rec) else None,
        "feature_sample_share": frame.features.sample_share,
        "seconds": {"read": t_read - t0, "labels": t_labels - t_read, "gates": t_gates - t_labels},
    }
    return Evaluation(verdict=verdict, candidate=candidate, gates=results, evidence=evidence, divergence=div,
                      summary=summary, thresholds=cfg.model_dump(mode="json", by_alias=True),
                      data_version=_data_version(frame, labels), frame=frame)


def _data_version(frame: ShadowFrame, labels: Labels | None) -> str:
    """A fingerprint of the evaluated data: the records' request keys, times, statuses and latencies,
    both sides' scores and predicted classes, and the labels (an edited score changes it too)."""
    h = xxh3_64()
    rec, rows = frame.records, frame.rows
    for col in (rec.request_hash, rec.ts, rec.champion_status, rec.shadow_status, rec.champion_latency_ms,
                rec.shadow_latency_ms, rows.champion_score, rows.shadow_score, rows.champion_label,
                rows.shadow_label):
        h.update(np.ascontiguousarray(col).tobytes())
    if labels is not None:
        h.update(labels.key.tobytes())
        h.update(labels.label.tobytes())
    return f"xxh3:{h.hexdigest()}"

