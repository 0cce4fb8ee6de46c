"""Accuracy gate: candidate AUC above an absolute floor AND above the champion's by a minimum delta,
both measured on the same labelled rows (where both models answered)."""

from __future__ import annotations

from gates.checks.base import GateContext, GateResult, fmt


class AccuracyGate:
    name = "accuracy"

    def evaluate(self, ctx: GateContext) -> GateResult:
        cfg = ctx.config.accuracy
        rows = ctx.frame.rows
        m = ctx.labelled_rows
        y = rows.label[m]
        auc_cand = ctx.overall_auc("shadow")
        auc_prod = ctx.overall_auc("champion")
        delta = auc_cand - auc_prod
        values = {"auc_candidate": auc_cand, "auc_champion": auc_prod, "delta": delta,
                  "min_auc": cfg.min_auc, "min_delta": cfg.min_delta,
                  "labelled_rows": int(y.size), "positives": int((y == 1).sum())}
        if auc_cand != auc_cand:  # NaN: one class only
            return GateResult(self.name, False, "AUC undefined: the labelled rows hold one class only", values)
        problems = []
        if auc_cand < cfg.min_auc:
            problems.append(f"candidate AUC {fmt(auc_cand)} < minimum {fmt(cfg.min_auc)}")
        if delta < cfg.min_delta:
            problems.append(f"candidate AUC {fmt(auc_cand)} - champion AUC {fmt(auc_prod)} = {fmt(delta)} "
                            f"< required delta {fmt(cfg.min_delta)}")
        if problems:
            return GateResult(self.name, False, "; ".join(problems), values)
        return GateResult(self.name, True, f"AUC {fmt(auc_cand)} vs champion {fmt(auc_prod)} "
                          f"(delta {fmt(delta)} >= {fmt(cfg.min_delta)}) on {y.size} labelled rows", values)
