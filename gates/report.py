"""Human-readable output of an evaluation: the terminal table and a self-contained HTML report.

The HTML embeds its plots as inline SVG (matplotlib, Agg) and carries no scripts, fonts or links,
so it opens offline and can be attached to a review or an audit record.
"""

from __future__ import annotations

import html
import io
import math
from typing import Any

import numpy as np

from gates.evaluate import Evaluation

_MARK = {True: "PASS", False: "FAIL"}
VERDICT_TEXT = {"pass": "PASS", "fail": "FAIL", "insufficient_evidence": "INSUFFICIENT EVIDENCE"}


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def text_table(ev: Evaluation, *, width: int = 110) -> str:
    """The pass/fail table `shadowlane gate` prints."""
    name, version = ev.candidate
    s = ev.summary
    lines = [f"candidate {name} v{version}: {s['candidate_records']} records, {s['rows']} answered rows, "
             f"{s['labelled_rows']} labelled ({s['duplicates']} duplicates dropped)"]
    rows = [("evidence", e.name.removeprefix("evidence."), e.passed, e.reason) for e in ev.evidence]
    rows += [("gate", g.name, g.passed, g.reason) for g in ev.gates]
    w_name = max(len(r[1]) for r in rows) if rows else 8
    lines.append(f"{'':8}  {'check':<{w_name}}  {'result':<6}  reason")
    for kind, check, passed, reason in rows:
        lines.append(f"{kind:<8}  {check:<{w_name}}  {_MARK[passed]:<6}  "
                     f"{_short(reason, max(width - w_name - 20, 30))}")
    d = ev.divergence.get("overall")
    if d and d.get("pairs"):
        lines.append(f"divergence: agreement {d['agreement_rate']:.4f}, mean |Δscore| {d['mean_abs_diff']:.4f}, "
                     f"p99 |Δscore| {d['p99_abs_diff']:.4f}, PSI {d['psi']:.4f}, KS {d['ks']:.4f}")
        nf = ev.divergence.get("noise_floor")
        if nf and nf.get("pairs"):
            lines.append(f"noise floor (champion vs champion, {nf['pairs']} pairs): agreement "
                         f"{nf['agreement_rate']:.4f}, mean |Δscore| {nf['mean_abs_diff']:.4f}")
    lines.append(f"verdict: {VERDICT_TEXT[ev.verdict]}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ HTML


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: inline SVG in HTML5


def _plots(ev: Evaluation, scores: tuple[np.ndarray, np.ndarray] | None) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    if scores is not None and scores[0].size:
        fig, ax = plt.subplots(figsize=(6, 3))
        bins = np.linspace(0, 1, 41) if scores[0].min() >= 0 and scores[0].max() <= 1 else 40
        ax.hist(scores[0], bins=bins, alpha=0.55, label="champion", density=True)
        ax.hist(scores[1], bins=bins, alpha=0.55, label="candidate", density=True)
        ax.set_xlabel("score")
        ax.set_ylabel("density")
        ax.legend()
        out.append(("Score distributions, champion vs candidate (same requests)", _svg(fig)))
    drift = _gate_values(ev, "drift").get("features") or {}
    psis = {k: v["psi"] for k, v in drift.items() if v.get("psi") is not None}
    if psis:
        fig, ax = plt.subplots(figsize=(6, 0.35 * len(psis) + 1))
        names = sorted(psis, key=psis.get)
        ax.barh(names, [psis[n] for n in names], color=["#c0392b" if psis[n] > _gate_values(ev, "drift")["max_psi"]
                                                          else "#2e86c1" for n in names])
        ax.axvline(_gate_values(ev, "drift")["max_psi"], color="k", ls="--", lw=1)
        ax.set_xlabel("PSI (training vs production)")
        out.append(("Feature drift: PSI per feature", _svg(fig)))
    groups = _gate_values(ev, "fairness").get("groups") or {}
    if groups:
        names = list(groups)
        x = np.arange(len(names))
        fig, axes = plt.subplots(1, 2, figsize=(9, 3))
        axes[0].bar(x - 0.2, [groups[n]["approval_champion"] for n in names], 0.4, label="champion")
        axes[0].bar(x + 0.2, [groups[n]["approval_candidate"] for n in names], 0.4, label="candidate")
        axes[0].set_title("approval rate per group")
        axes[0].legend(loc="lower left", fontsize="small")
        auc_c = [_nan0(groups[n].get("auc_champion")) for n in names]
        auc_s = [_nan0(groups[n].get("auc_candidate")) for n in names]
        axes[1].bar(x - 0.2, auc_c, 0.4, label="champion")
        axes[1].bar(x + 0.2, auc_s, 0.4, label="candidate")
        axes[1].set_title("AUC per group")
        for ax in axes:
            ax.set_xticks(x, names, rotation=20)
        out.append((f"Per-group metrics ({_gate_values(ev, 'fairness').get('attribute')})", _svg(fig)))
    return out


def _nan0(v: Any) -> float:
    return 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _gate_values(ev: Evaluation, name: str) -> dict[str, Any]:
    for g in ev.gates:
        if g.name == name:
            return g.values
    return {}


def _num(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else (f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}")
    return html.escape(str(v))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, _Raw) else _num(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Raw(str):
    """Already-escaped HTML for a table cell."""


def html_report(ev: Evaluation, *, scores: tuple[np.ndarray, np.ndarray] | None = None) -> str:
    """A standalone HTML page: verdict, checks, divergence (overall, noise floor, per segment), plots.

    `scores` = (champion, candidate) score arrays of the compared rows, for the distribution plot.
    """
    name, version = ev.candidate
    if scores is None:
        scores = ev.compared_scores()
    verdict = VERDICT_TEXT[ev.verdict]
    colour = {"pass": "#1e8449", "fail": "#c0392b", "insufficient_evidence": "#b9770e"}[ev.verdict]
    checks = [[_Raw(html.escape(c.name)), _Raw(f"<b class='{'ok' if c.passed else 'bad'}'>{_MARK[c.passed]}</b>"),
               c.reason] for c in ev.evidence + ev.gates]
    parts = [f"<h1>Gate report: {html.escape(name)} v{version}</h1>",
             f"<p class='verdict' style='background:{colour}'>{verdict}</p>",
             "<h2>Checks</h2>", _table(["check", "result", "reason"], checks)]
    metric_cols = ["pairs", "agreement_rate", "mean_abs_diff", "p99_abs_diff", "psi", "ks", "ks_pvalue"]
    d = ev.divergence
    if d.get("overall"):
        rows = [["all traffic"] + [d["overall"].get(k) for k in metric_cols]]
        if d.get("noise_floor"):
            rows.append(["noise floor (champion vs champion)"] + [d["noise_floor"].get(k) for k in metric_cols])
        for attr, segs in (d.get("segments") or {}).items():
            rows += [[f"{attr}={seg}"] + [v.get(k) for k in metric_cols] for seg, v in segs.items()]
        parts += ["<h2>Divergence, champion vs candidate</h2>", _table(["traffic"] + metric_cols, rows)]
    groups = _gate_values(ev, "fairness").get("groups") or {}
    if groups:
        cols = ["rows", "labelled", "approval_champion", "approval_candidate", "approval_ratio", "decline_ratio",
                "auc_champion", "auc_candidate", "auc_gap"]
        parts += ["<h2>Per-group results</h2>",
                  _table(["group"] + cols, [[g] + [v.get(c) for c in cols] for g, v in groups.items()])]
    for title, svg in _plots(ev, scores):
        parts += [f"<h2>{html.escape(title)}</h2>", f"<div class='plot'>{svg}</div>"]
    s = ev.summary
    parts += ["<h2>Data</h2>", _table(["figure", "value"], [[k, v] for k, v in s.items() if not isinstance(v, (dict, list))]
                                      + [["data version", ev.data_version]])]
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}"
             ".verdict{color:#fff;font-size:22px;font-weight:bold;padding:8px 14px;display:inline-block}"
             ".ok{color:#1e8449}.bad{color:#c0392b}.plot svg{max-width:100%;height:auto}")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Gate report {html.escape(name)} "
            f"v{version}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
