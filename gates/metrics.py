"""Vectorised metric definitions shared by the gates, the divergence report and the benchmark.

Each function equals the standard definition it names (tests compare them with scikit-learn and
scipy on the same arrays); they are written with numpy only, around value sorts and bisections of
sorted arrays (no argsort), so a 10-million-row gate run avoids the validation, copies and index
sorts the library versions make.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import distributions

PSI_EPS = 1e-4  # floor for empty bins, so PSI stays finite (Evidently and most write-ups do the same)


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve; equals `sklearn.metrics.roc_auc_score` (ties count one half).

    Returns NaN when only one class is present (sklearn raises instead).
    """
    y = np.asarray(y_true).astype(bool, copy=False)
    s = np.asarray(score)
    return roc_auc_from_classes(np.sort(s[y]), np.sort(s[~y]))


def roc_auc_from_classes(pos_sorted: np.ndarray, neg_sorted: np.ndarray) -> float:
    """AUC from the ascending scores of the positives and of the negatives: the Mann-Whitney U,
    sum over positives of (#negatives below + half the negatives tied), over n_pos * n_neg.

    Two value sorts and a merge-like bisection: much cheaper than an argsort of all scores.
    """
    n_pos, n_neg = pos_sorted.size, neg_sorted.size
    if n_pos == 0 or n_neg == 0:
        return math.nan
    below = np.searchsorted(neg_sorted, pos_sorted, side="left").sum(dtype=np.int64)
    below_or_tied = np.searchsorted(neg_sorted, pos_sorted, side="right").sum(dtype=np.int64)
    return float(below + below_or_tied) / (2.0 * n_pos * n_neg)


def ks_statistic(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and its asymptotic p-value.

    The statistic equals `scipy.stats.ks_2samp(a, b).statistic`. The p-value is scipy's
    `method="asymp"` one (`kstwo` at n*m/(n+m)) up to an effective size of 100,000; beyond, where
    `kstwo` costs ~0.3 s a call and agrees to ~1e-3, the Kolmogorov limit `kstwobign`.
    """
    return ks_sorted(np.sort(np.asarray(a, dtype=np.float64)), np.sort(np.asarray(b, dtype=np.float64)))


def ks_sorted(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """`ks_statistic` of two samples already sorted ascending."""
    n, m = a.size, b.size
    if n == 0 or m == 0:
        return math.nan, math.nan
    # The CDF difference is largest at a sample point; evaluate both CDFs at the points of `a`, then
    # of `b` (scipy does the same over the concatenation). Sorted needles keep searchsorted cheap.
    d_at_a = np.max(np.abs(_right_ranks(a) / n - np.searchsorted(b, a, side="right") / m))
    d_at_b = np.max(np.abs(np.searchsorted(a, b, side="right") / n - _right_ranks(b) / m))
    d = float(max(d_at_a, d_at_b))
    en = n * m / (n + m)
    if en <= 100_000:
        p = float(distributions.kstwo.sf(d, np.round(en)))
    else:
        p = float(distributions.kstwobign.sf(d * math.sqrt(en)))
    return d, min(max(p, 0.0), 1.0)


def _right_ranks(x: np.ndarray) -> np.ndarray:
    """For sorted `x`: how many elements are <= each element (`searchsorted(x, x, "right")`), in O(n)."""
    ends = np.flatnonzero(np.r_[x[1:] != x[:-1], True]) + 1
    return np.repeat(ends, np.diff(np.r_[0, ends]))


def quantile_edges(x: np.ndarray, bins: int = 10) -> np.ndarray:
    """Inner bin edges at the quantiles of `x` (duplicates removed); outer bins are open."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return np.empty(0)
    qs = np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(qs)


def bin_counts(x: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Counts of `x` in the len(edges)+1 bins (-inf, e0), [e0, e1), ..., [ek, inf); NaN is dropped."""
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    idx = np.searchsorted(np.asarray(inner_edges, dtype=np.float64), x, side="right")
    return np.bincount(idx, minlength=len(inner_edges) + 1)


def sorted_bin_counts(x_sorted: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """`bin_counts` of an ascending array without NaN, by bisecting the edges into it."""
    cuts = np.searchsorted(x_sorted, np.asarray(inner_edges, dtype=np.float64), side="left")
    return np.diff(np.r_[0, cuts, x_sorted.size])


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = PSI_EPS) -> float:
    """Population stability index sum((a - e) * ln(a / e)) of two bin-count or proportion vectors."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.sum() <= 0 or a.sum() <= 0:
        return math.nan
    e = np.clip(e / e.sum(), eps, None)
    a = np.clip(a / a.sum(), eps, None)
    return float(np.sum((a - e) * np.log(a / e)))


def percentile(x: np.ndarray, q: float) -> float:
    """`numpy.percentile` with the default (linear) method; NaN for an empty array."""
    x = np.asarray(x)
    return float(np.percentile(x, q)) if x.size else math.nan


def rate(mask: np.ndarray) -> float:
    """Share of True values; NaN for an empty mask."""
    return float(np.count_nonzero(mask) / mask.size) if mask.size else math.nan
