"""Training statistics of a model version: per-feature bin edges and proportions for the drift gate.

Made once at training time with `training_stats(X, feature_names)` and stored with the model
version (MLflow tag `training_stats` or artifact `training_stats.json`, see docs/gates.md).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from gates.metrics import bin_counts, quantile_edges

STATS_FORMAT = "shadowlane.training-stats.v1"
_DISCRETE_MAX = 20  # columns with at most this many distinct values get one bin per value


def training_stats(X: Any, feature_names: Sequence[str], *, bins: int = 10) -> dict[str, Any]:
    """Per-feature bin edges and proportions of the training matrix `X` ([n, k], or a DataFrame).

    Continuous columns get `bins` quantile bins; low-cardinality ones (flags, counts) one bin per
    value, so a shift in a 0/1 flag's share shows up in PSI.
    """
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != len(feature_names):
        raise ValueError(f"X has shape {arr.shape}; expected [n, {len(feature_names)}] for {len(feature_names)} feature names")
    features = {}
    for j, name in enumerate(feature_names):
        col = arr[:, j]
        finite = col[np.isfinite(col)]
        distinct = np.unique(finite)
        if distinct.size <= _DISCRETE_MAX:
            edges = (distinct[1:] + distinct[:-1]) / 2
        else:
            edges = quantile_edges(finite, bins)
        counts = bin_counts(finite, edges)
        features[str(name)] = {
            "edges": edges.tolist(),
            "proportions": (counts / max(counts.sum(), 1)).tolist(),
            "mean": float(finite.mean()) if finite.size else None,
            "std": float(finite.std()) if finite.size else None,
            "missing_share": float(1 - finite.size / max(col.size, 1)),
        }
    return {"format": STATS_FORMAT, "rows": int(arr.shape[0]), "features": features}


def validate_stats(stats: dict[str, Any]) -> None:
    if not isinstance(stats, dict) or stats.get("format") != STATS_FORMAT or not isinstance(stats.get("features"), dict):
        raise ValueError(f"training statistics must be a {STATS_FORMAT!r} JSON object (gates.drift_stats.training_stats)")
    for name, f in stats["features"].items():
        if len(f.get("proportions", [])) != len(f.get("edges", [])) + 1:
            raise ValueError(f"training statistics of {name!r}: need len(edges) + 1 proportions")
