"""Divergence between champion and candidate on the same traffic, overall and per segment, with
a noise floor from champion-vs-champion pairs (diffy's idea: differences a second copy of the
champion also shows are nondeterminism, not regressions)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gates.checks.base import GateContext
from gates.metrics import bin_counts, ks_statistic, percentile, psi, quantile_edges


def pair_divergence(champion: np.ndarray, candidate: np.ndarray, champion_label: np.ndarray,
                    candidate_label: np.ndarray, *, bins: int = 10) -> dict[str, Any]:
    """Agreement rate, mean/p99 |score difference|, PSI (champion bins) and KS of one set of pairs."""
    n = int(champion.size)
    if n == 0:
        return {"pairs": 0}
    diff = np.abs(candidate - champion)
    edges = quantile_edges(champion, bins)
    ks, p = ks_statistic(champion, candidate)
    return {
        "pairs": n,
        "agreement_rate": float(np.count_nonzero(champion_label == candidate_label) / n),
        "mean_abs_diff": float(diff.mean()),
        "p99_abs_diff": percentile(diff, 99),
        "psi": psi(bin_counts(champion, edges), bin_counts(candidate, edges)),
        "ks": ks,
        "ks_pvalue": p,
    }


def divergence(ctx: GateContext) -> dict[str, Any]:
    """Overall, per-segment and noise-floor divergence of the candidate against the champion."""
    rows = ctx.frame.rows
    cfg = ctx.config.divergence
    m = ctx.candidate_rows

    def on(mask: np.ndarray) -> dict[str, Any]:
        return pair_divergence(rows.champion_score[mask], rows.shadow_score[mask],
                               rows.champion_label[mask], rows.shadow_label[mask], bins=cfg.psi_bins)

    out: dict[str, Any] = {"overall": on(m)}
    noise = ctx.noise_rows
    out["noise_floor"] = on(noise) if noise.any() else None
    segments: dict[str, Any] = {}
    attrs = cfg.segment_attributes if cfg.segment_attributes is not None else sorted(ctx.frame.records.attributes)
    for attr in attrs:
        found = ctx.row_attribute(attr)
        if found is None:
            continue
        codes, cats = found
        counts = np.bincount(codes[m] + 1, minlength=len(cats) + 1)
        top = np.argsort(-counts)[:cfg.max_segments]
        names = ["<missing>"] + cats
        segments[attr] = {names[i]: on(m & (codes == i - 1)) for i in top if counts[i] > 0}
    out["segments"] = segments
    return out
