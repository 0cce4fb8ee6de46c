"""Divergence between champion and candidate on the same traffic, overall and per segment, with
a noise floor from champion-vs-champion pairs (diffy's idea: differences a second copy of the
champion also shows are nondeterminism, not regressions)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gates.checks.base import GateContext
from gates.metrics import ks_sorted, percentile, psi, quantile_edges, sorted_bin_counts


def pair_divergence(champion: np.ndarray, candidate: np.ndarray, champion_label: np.ndarray,
                    candidate_label: np.ndarray, *, bins: int = 10) -> dict[str, Any]:
    """Agreement rate, mean/p99 |score difference|, PSI (champion bins) and KS of one set of pairs."""
    n = int(champion.size)
    if n == 0:
        return {"pairs": 0}
    cs, ss = np.sort(champion), np.sort(candidate)  # value sorts (SIMD): far cheaper than argsorts
    diff = np.abs(candidate - champion)
    edges = quantile_edges(cs, bins)
    ks, p = ks_sorted(cs, ss)
    return {
        "pairs": n,
        "agreement_rate": float(np.count_nonzero(champion_label == candidate_label) / n),
        "mean_abs_diff": float(diff.mean()),
        "p99_abs_diff": percentile(diff, 99),
        "psi": psi(sorted_bin_counts(cs, edges), sorted_bin_counts(ss, edges)),
        "ks": ks,
        "ks_pvalue": p,
    }


def divergence(ctx: GateContext) -> dict[str, Any]:
    """Overall, per-segment and noise-floor divergence of the candidate against the champion."""
    rows = ctx.frame.rows
    cfg = ctx.config.divergence
    m = ctx.candidate_rows
    cs, ss = rows.champion_score[m], rows.shadow_score[m]
    cl, sl = rows.champion_label[m], rows.shadow_label[m]
    out: dict[str, Any] = {"overall": pair_divergence(cs, ss, cl, sl, bins=cfg.psi_bins)}
    noise = ctx.noise_rows
    out["noise_floor"] = pair_divergence(rows.champion_score[noise], rows.shadow_score[noise],
                                         rows.champion_label[noise], rows.shadow_label[noise],
                                         bins=cfg.psi_bins) if noise.any() else None
    segments: dict[str, Any] = {}
    attrs = cfg.segment_attributes if cfg.segment_attributes is not None else sorted(ctx.frame.records.attributes)
    for attr in attrs:
        found = ctx.row_attribute(attr)
        if found is None:
            continue
        codes_all, cats = found
        codes = codes_all[m]
        counts = np.bincount(codes + 1, minlength=len(cats) + 1)
        top = np.argsort(-counts)[:cfg.max_segments]
        names = ["<missing>"] + cats
        per: dict[str, Any] = {}
        for i in top:
            if counts[i]:
                sel = codes == i - 1
                per[names[i]] = pair_divergence(cs[sel], ss[sel], cl[sel], sl[sel], bins=cfg.psi_bins)
        segments[attr] = per
    out["segments"] = segments
    return out
