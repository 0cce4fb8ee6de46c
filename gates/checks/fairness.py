"""Fairness gate, per group of one request attribute (e.g. `segment`):

- the candidate's AUC in the group is within `max_auc_gap` of its overall AUC, and
- the candidate's approval and decline rates relative to the champion's on the same requests:
  approval ratio >= `min_approval_ratio` and decline ratio <= `max_decline_ratio`, so a segment
  declined three times as often fails even when AUC looks fine.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gates.checks.base import GateContext, GateResult, fmt
from gates.metrics import roc_auc


class FairnessGate:
    name = "fairness"

    def evaluate(self, ctx: GateContext) -> GateResult:
        cfg = ctx.config.fairness
        approve = ctx.config.outputs.approve_label
        rows = ctx.frame.rows
        attr = ctx.row_attribute(cfg.attribute)
        if attr is None:
            return GateResult(self.name, False, f"the log has no attribute {cfg.attribute!r} to group by",
                              {"attribute": cfg.attribute})
        codes, cats = attr
        both = ctx.candidate_rows
        lab = ctx.labelled_rows
        overall_auc = ctx.overall_auc("shadow")
        groups: dict[str, dict[str, Any]] = {}
        problems: list[str] = []
        c_codes = codes[both]
        cand_ok = rows.shadow_label[both] == approve
        champ_ok = rows.champion_label[both] == approve
        n_by = np.bincount(c_codes + 1, minlength=len(cats) + 1)
        cand_by = np.bincount(c_codes + 1, weights=cand_ok, minlength=len(cats) + 1)
        champ_by = np.bincount(c_codes + 1, weights=champ_ok, minlength=len(cats) + 1)
        l_codes = codes[lab]
        y_lab, cand_lab, champ_lab = rows.label[lab], rows.shadow_score[lab], rows.champion_score[lab]
        for i, name in enumerate(["<missing>"] + cats):
            n = int(n_by[i])
            if n == 0:
                continue
            a_cand, a_champ = cand_by[i] / n, champ_by[i] / n
            d_cand, d_champ = 1 - a_cand, 1 - a_champ
            approval_ratio = a_cand / a_champ if a_champ > 0 else (math.inf if a_cand > 0 else 1.0)
            decline_ratio = d_cand / d_champ if d_champ > 0 else (math.inf if d_cand > 0 else 1.0)
            g: dict[str, Any] = {"rows": n, "approval_candidate": a_cand, "approval_champion": a_champ,
                                 "approval_ratio": approval_ratio, "decline_ratio": decline_ratio,
                                 "judged": n >= cfg.min_group_rows}
            sel = l_codes == i - 1
            y = y_lab[sel]
            g["labelled"] = int(y.size)
            g["auc_candidate"] = roc_auc(y, cand_lab[sel])
            g["auc_champion"] = roc_auc(y, champ_lab[sel])
            g["auc_gap"] = abs(g["auc_candidate"] - overall_auc)
            groups[name] = g
            if not g["judged"]:
                continue
            if approval_ratio < cfg.min_approval_ratio:
                problems.append(f"{cfg.attribute}={name}: approval rate {fmt(a_cand, 3)} vs champion {fmt(a_champ, 3)} "
                                f"(ratio {fmt(approval_ratio, 2)} < {fmt(cfg.min_approval_ratio, 2)})")
            if decline_ratio > cfg.max_decline_ratio:
                problems.append(f"{cfg.attribute}={name}: declined {fmt(decline_ratio, 2)}x as often as by the champion "
                                f"({fmt(d_cand, 3)} vs {fmt(d_champ, 3)}; allowed {fmt(cfg.max_decline_ratio, 2)}x)")
            if y.size >= cfg.min_group_labelled and not math.isnan(g["auc_gap"]) and g["auc_gap"] > cfg.max_auc_gap:
                problems.append(f"{cfg.attribute}={name}: AUC {fmt(g['auc_candidate'])} is {fmt(g['auc_gap'])} from "
                                f"overall {fmt(overall_auc)} (allowed {fmt(cfg.max_auc_gap)})")
        values = {"attribute": cfg.attribute, "overall_auc": overall_auc, "groups": groups,
                  "max_auc_gap": cfg.max_auc_gap, "min_approval_ratio": cfg.min_approval_ratio,
                  "max_decline_ratio": cfg.max_decline_ratio}
        judged = sum(1 for g in groups.values() if g["judged"])
        small = [f"{n} ({g['rows']} rows)" for n, g in groups.items() if not g["judged"]]
        values["unjudged_groups"] = small
        if problems:
            return GateResult(self.name, False, "; ".join(problems), values)
        # a pass must say which groups it could not look at (fewer than min_group_rows rows)
        note = f"; not judged, under {cfg.min_group_rows} rows: {', '.join(small)}" if small else ""
        return GateResult(self.name, True, f"{judged} groups of {cfg.attribute!r} within the allowed gaps{note}", values)
