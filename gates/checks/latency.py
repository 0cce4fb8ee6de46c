"""Latency gate: the candidate's shadow latency percentile (measured live, or by `shadowlane replay`)
within the budget. Timed-out calls count with their recorded latency, so timeouts cannot hide a
slow tail."""

from __future__ import annotations

import numpy as np

from gates.checks.base import GateContext, GateResult, fmt
from gates.metrics import percentile
from gates.reader import STATUS_CODES


class LatencyGate:
    name = "latency"

    def evaluate(self, ctx: GateContext) -> GateResult:
        cfg = ctx.config.latency
        rec = ctx.frame.records
        m = ctx.candidate_records & (rec.shadow_status != STATUS_CODES["error"])
        lat = rec.shadow_latency_ms[m].astype(np.float64)
        champ = rec.champion_latency_ms[ctx.candidate_records].astype(np.float64)
        q = cfg.percentile
        p_cand = percentile(lat, q)
        values = {"percentile": q, "candidate_ms": p_cand, "champion_ms": percentile(champ, q),
                  "candidate_p50_ms": percentile(lat, 50), "budget_ms": cfg.budget_ms, "calls": int(lat.size)}
        if lat.size == 0:
            return GateResult(self.name, False, "no candidate latencies in the log", values)
        if p_cand > cfg.budget_ms:
            return GateResult(self.name, False, f"p{q:g} latency {fmt(p_cand, 2)} ms > budget {fmt(cfg.budget_ms, 2)} ms", values)
        return GateResult(self.name, True, f"p{q:g} latency {fmt(p_cand, 2)} ms <= budget {fmt(cfg.budget_ms, 2)} ms", values)
