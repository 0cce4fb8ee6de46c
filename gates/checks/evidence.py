"""Enough evidence first: checks that must all pass before any gate's verdict counts.

A failing check makes the evaluation "insufficient_evidence" (exit code 3), never "pass":
too few labelled rows, a window shorter than the minimum shadow duration, too many shadow
errors/timeouts, failures concentrated in one segment, or a segment the shadow silently skipped
(its share of the candidate's records far below its share of all requests in the log).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gates.checks.base import GateContext, GateResult


def check_evidence(ctx: GateContext) -> list[GateResult]:
    """Every evidence check, in a fixed order; names are prefixed `evidence.`."""
    out = [_records(ctx)]
    if not out[0].passed:
        return out
    out += [_labelled(ctx), _duration(ctx), _failures(ctx), _segments(ctx)]
    cfg = ctx.config
    if cfg.fairness.enabled and cfg.fairness.attribute not in ctx.frame.records.attributes:
        out.append(GateResult("evidence.fairness_attribute", False,
                              f"no record carries attribute {cfg.fairness.attribute!r}: the fairness gate "
                              "cannot group (set server.attribute_headers in the proxy)", {}))
    if (cfg.drift.enabled or cfg.schema_.enabled) and ctx.frame.features.records_with_features == 0:
        out.append(GateResult("evidence.features", False, "no candidate record kept its features "
                              "(shadow.record_features is off): drift and schema cannot be checked", {}))
    return out


def _records(ctx: GateContext) -> GateResult:
    n = int(np.count_nonzero(ctx.candidate_records))
    name, version = ctx.frame.candidate
    values = {"candidate_records": n, "records_in_window": len(ctx.frame.records)}
    if n == 0:
        return GateResult("evidence.records", False, f"the log holds no records of {name} v{version}", values)
    return GateResult("evidence.records", True, f"{n} records of {name} v{version}", values)


def _labelled(ctx: GateContext) -> GateResult:
    cfg = ctx.config.evidence
    y = ctx.frame.rows.label[ctx.labelled_rows] if ctx.frame.rows.label is not None else np.empty(0, np.int8)
    pos = int(np.count_nonzero(y == 1))
    neg = int(y.size - pos)
    candidate_rows = int(np.count_nonzero(ctx.candidate_rows))
    values = {"labelled_rows": int(y.size), "positives": pos, "negatives": neg, "answered_rows": candidate_rows,
              "min_labelled": cfg.min_labelled, "min_per_class": cfg.min_per_class}
    if y.size < cfg.min_labelled:
        return GateResult("evidence.labelled", False, f"{y.size} labelled rows < {cfg.min_labelled} required "
                          f"({candidate_rows} answered rows; labels may not have arrived yet)", values)
    if min(pos, neg) < cfg.min_per_class:
        return GateResult("evidence.labelled", False, f"{pos} positive / {neg} negative labels: need "
                          f"{cfg.min_per_class} of each class", values)
    return GateResult("evidence.labelled", True, f"{y.size} labelled rows ({pos} positive)", values)


def _duration(ctx: GateContext) -> GateResult:
    cfg = ctx.config.evidence
    ts = ctx.frame.records.ts[ctx.candidate_records]
    hours = float(ts.max() - ts.min()) / 3600 if ts.size else 0.0
    values = {"first_ts": float(ts.min()), "last_ts": float(ts.max()), "hours": hours, "min_hours": cfg.min_duration_h}
    if hours < cfg.min_duration_h:
        return GateResult("evidence.duration", False, f"shadow covers {hours:.1f} h < minimum {cfg.min_duration_h:g} h", values)
    return GateResult("evidence.duration", True, f"shadow covers {hours:.1f} h", values)


def _failures(ctx: GateContext) -> GateResult:
    cfg = ctx.config.evidence
    st = ctx.frame.records.shadow_status[ctx.candidate_records]
    failed = int(np.count_nonzero(st != 0))
    share = failed / st.size
    values = {"failed": failed, "errors": int(np.count_nonzero(st == 1)), "timeouts": int(np.count_nonzero(st == 2)),
              "failure_rate": share, "max_failure_rate": cfg.max_failure_rate}
    if share > cfg.max_failure_rate:
        return GateResult("evidence.failures", False, f"shadow failed (error/timeout) on {share:.1%} of requests "
                          f"> {cfg.max_failure_rate:.1%}", values)
    return GateResult("evidence.failures", True, f"shadow failure rate {share:.2%}", values)


def _segments(ctx: GateContext) -> GateResult:
    """Uneven failures and silent skips, per value of every segment attribute."""
    cfg = ctx.config.evidence
    rec = ctx.frame.records
    cand = ctx.candidate_records
    attrs = cfg.segment_attributes if cfg.segment_attributes is not None else sorted(rec.attributes)
    # Reference: every distinct request in the window, whatever shadow it was logged for.
    # Any one record per request will do (a request's attributes are the same in all of its records),
    # so a plain argsort finds them; np.unique(return_index=True) would need a slower stable sort.
    order = np.argsort(rec.request_hash)
    hashes = rec.request_hash[order]
    first = order[np.r_[True, hashes[1:] != hashes[:-1]]] if hashes.size else order
    del order, hashes
    overall_fail = float(np.mean(rec.shadow_status[cand] != 0))
    problems: list[str] = []
    report: dict[str, Any] = {}
    for attr in attrs:
        cat = rec.attributes.get(attr)
        if cat is None:
            problems.append(f"attribute {attr!r} is not in the log")
            continue
        k = len(cat.categories) + 1
        cand_codes = cat.codes[cand] + 1
        n_cand = np.bincount(cand_codes, minlength=k)
        n_fail = np.bincount(cand_codes, weights=rec.shadow_status[cand] != 0, minlength=k)
        n_ref = np.bincount(cat.codes[first] + 1, minlength=k)
        expected = cfg.expected_segment_shares.get(attr, {})
        rows = {}
        for i, value in enumerate(["<missing>"] + cat.categories):
            ref_share = expected.get(value, n_ref[i] / n_ref.sum())
            cand_share = n_cand[i] / n_cand.sum()
            fail = n_fail[i] / n_cand[i] if n_cand[i] else float("nan")
            big = n_ref[i] >= cfg.min_segment_records or value in expected
            if big or n_cand[i] >= cfg.min_segment_records:  # small segments are not judged, nor listed
                rows[value] = {"candidate_records": int(n_cand[i]), "reference_requests": int(n_ref[i]),
                               "candidate_share": cand_share, "reference_share": ref_share, "failure_rate": fail}
            if big and ref_share > 0 and cand_share / ref_share < cfg.min_segment_coverage:
                problems.append(f"{attr}={value}: {cand_share:.1%} of the candidate's records but {ref_share:.1%} "
                                "of requests (shadow skipped part of this segment)")
            if n_cand[i] >= cfg.min_segment_records and fail - overall_fail > cfg.max_segment_failure_gap:
                problems.append(f"{attr}={value}: shadow failure rate {fail:.1%} vs {overall_fail:.1%} overall")
        for value, share in expected.items():
            if value not in cat.categories and share > 0:
                problems.append(f"{attr}={value}: expected {share:.1%} of requests, the candidate has none")
        report[attr] = rows
    values = {"segments": report, "overall_failure_rate": overall_fail,
              "max_segment_failure_gap": cfg.max_segment_failure_gap, "min_segment_coverage": cfg.min_segment_coverage}
    if problems:
        return GateResult("evidence.segments", False, "; ".join(problems), values)
    return GateResult("evidence.segments", True, f"failures and coverage even across {len(attrs)} attribute(s)", values)
