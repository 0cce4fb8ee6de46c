"""Divergence between champion and candidate on the same traffic, overall and per segment, with
a noise floor from champion-vs-champion pairs (diffy's idea: differences a second copy of the
champion also shows are nondeterminism, not regressions)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gates.checks.base import GateContext
from gates.metrics import ks_sorted, percentile, psi, quantile_edges, sorted_bin_counts


def pair_divergence(champion: np.ndarray, candidate: np.ndarray, champion_label: np.ndarray,
                    candidate_label: np.ndarray, *, bins: int = 10, champion_sorted: np.ndarray | None = None,
                    candidate_sorted: np.ndarray | None = None) -> dict[str, Any]:
    """Agreement rate, mean/p99 |score difference|, PSI (champion bins) and KS of one set of pairs.

    `champion_sorted` / `candidate_sorted`: the same scores in ascending order, when the caller has
    them (per-segment subsets of one sorted array) — saves two sorts.
    """
    n = int(champion.size)
    if n == 0:
        return {"pairs": 0}
    cs = np.sort(champion) if champion_sorted is None else champion_sorted
    ss = np.sort(candidate) if candidate_sorted is None else candidate_sorted
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
    # One sort per score column; every segment's subset of a sorted array is sorted too.
    c_order, s_order = np.argsort(cs), np.argsort(ss)
    cs_sorted, ss_sorted = cs[c_order], ss[s_order]
    out: dict[str, Any] = {"overall": pair_divergence(cs, ss, cl, sl, bins=cfg.psi_bins, champion_sorted=cs_sorted,
                                                      candidate_sorted=ss_sorted)}
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
        c_codes, s_codes = codes[c_order], codes[s_order]
        counts = np.bincount(codes + 1, minlength=len(cats) + 1)
        top = np.argsort(-counts)[:cfg.max_segments]
        names = ["<missing>"] + cats
        per: dict[str, Any] = {}
        for i in top:
            if counts[i] == 0:
                continue
            sel = codes == i - 1
            per[names[i]] = pair_divergence(cs[sel], ss[sel], cl[sel], sl[sel], bins=cfg.psi_bins,
                                            champion_sorted=cs_sorted[c_codes == i - 1],
                                            candidate_sorted=ss_sorted[s_codes == i - 1])
        segments[attr] = per
    out["segments"] = segments
    return out
