"""Data-drift gate: PSI per feature between the candidate's training statistics and the production
features in the log. A feature the candidate was trained on that production does not send fails.

`gates.drift_stats.training_stats(X, feature_names)` makes the statistics at training time; store
the JSON with the model version (MLflow artifact `training_stats.json`, see docs/gates.md).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gates.checks.base import GateContext, GateResult, fmt
from gates.drift_stats import validate_stats
from gates.metrics import bin_counts, psi


class DriftGate:
    name = "drift"

    def evaluate(self, ctx: GateContext) -> GateResult:
        cfg = ctx.config.drift
        stats = ctx.training_stats
        if stats is None:
            return GateResult(self.name, False, "no training statistics for the candidate "
                              "(drift.training_stats in the gate config, or --training-stats)", {})
        validate_stats(stats)
        sample = ctx.frame.features
        per_feature: dict[str, Any] = {}
        missing, drifted, not_numeric = [], [], []
        for name, f in stats["features"].items():
            if name not in sample.names_seen:
                missing.append(name)
                per_feature[name] = {"psi": None, "status": "missing"}
                continue
            col = sample.columns.get(name)
            finite = col[np.isfinite(col)] if col is not None else np.empty(0)
            if finite.size == 0:
                not_numeric.append(name)
                per_feature[name] = {"psi": None, "status": "not numeric"}
                continue
            counts = bin_counts(finite, np.asarray(f["edges"]))
            value = psi(np.asarray(f["proportions"]), counts)
            # NaN (no training values in any bin) must not pass: only a PSI within the bound is "ok"
            status = "ok" if value <= cfg.max_psi else "drift"
            if status == "drift":
                drifted.append(name)
            per_feature[name] = {"psi": value, "status": status, "rows": int(finite.size),
                                 "production_mean": float(finite.mean()), "training_mean": f.get("mean")}
        untracked = sorted(sample.names_seen - set(stats["features"]))
        values = {"max_psi": cfg.max_psi, "features": per_feature, "untracked": untracked,
                  "sample_rows": sample.n_rows, "sample_share": sample.sample_share}
        psis = [v["psi"] for v in per_feature.values() if v["psi"] is not None and not math.isnan(v["psi"])]
        values["worst_psi"] = max(psis) if psis else math.nan
        problems = []
        if missing:
            problems.append(f"production does not send feature(s) {missing} the candidate was trained on")
        if not_numeric:
            problems.append(f"feature(s) {not_numeric} are not numeric in production")
        if drifted:
            worst = sorted(drifted, key=lambda n: -np.nan_to_num(per_feature[n]["psi"], nan=np.inf))
            problems.append("PSI above " + fmt(cfg.max_psi, 2) + " for "
                            + ", ".join(f"{n} ({fmt(per_feature[n]['psi'], 3)})" for n in worst))
        if problems:
            return GateResult(self.name, False, "; ".join(problems), values)
        return GateResult(self.name, True, f"{len(psis)} features, worst PSI {fmt(values['worst_psi'], 3)} "
                          f"<= {fmt(cfg.max_psi, 2)}", values)
