"""Write a suite result as JSON and as a markdown table (bench/results/<date>-<host>[-suffix].*)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _ms(us: float | None) -> str:
    return "—" if us is None else f"{us / 1000:.2f}"


def _num(x: float | None, fmt: str = "{:,.0f}") -> str:
    return "—" if x is None else fmt.format(x)


def _pct(x: float | None) -> float | None:
    return None if x is None else 100 * x


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    s = res["settings"]
    v = ", ".join(f"{k} {val}" for k, val in m["versions"].items() if val)
    lines = [
        f"# shadowlane benchmark — {m['host']}, {res['date']}",
        "",
        f"Machine: {m['cores']} cores, {m['cpu_model']}, {m['mem_gib']} GiB, Python {m['python']}, "
        f"kernel {m['kernel']}, load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_start'])}; "
        f"git {m['git']}.",
        f"Versions: {v}.",
        "",
        f"Method: servers pinned to CPU 0, generators to CPU 1 (taskset). Saturation: wrk -t1 -c{s['connections']} "
        f"closed loop, {s['warm_s']:g} s warm-up + {s['sat_s']:g} s measured. Fixed rates: bench/openloop.py, open "
        f"loop, latency from each request's scheduled send time (coordinated omission corrected), "
        f"{s['warm_s']:g} s warm-up + {s['fixed_s']:g} s measured. {s['reps']} repetitions, scenarios interleaved "
        f"(order rotated each repetition); medians shown; ratios are medians of per-repetition ratios to the "
        f"baseline measured in the same repetition. CPU µs/req = user+sys CPU of the scenario's server processes "
        f"during the measured run / requests (robust to other tenants); 'core share' is the "
        f"fraction of CPU 0 the scenario's servers used during that run — 1.0 = it had the core, less = a "
        f"neighbour took part of it. Shadow jobs dropped: mirrored requests whose shadow never ran "
        f"because the shadow queue was full — at saturation req/s and CPU per request then describe a "
        f"proxy shadowing only part of its traffic; compare shadow configurations at the fixed rates. "
        f"Took {res['elapsed_s']:.0f} s.",
        "",
        "## Saturation",
        "",
        "| scenario | what | req/s (median, min–max) | × baseline req/s | × baseline by CPU/req "
        "| p50 / p99 / p99.9 ms | CPU µs/req | core share | shadow jobs dropped | non-2xx |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, e in res["scenarios"].items():
        sat = e["sat"]
        ratio = f"{e['rps_ratio']:.2f}× {e['baseline']}" if e.get("rps_ratio") is not None else "—"
        cpu_ratio = f"{e['cpu_ratio']:.2f}×" if e.get("cpu_ratio") is not None else "—"
        lines.append(f"| {name} | {e['title']} | {_num(sat['rps'])} ({_num(sat['rps_min'])}–{_num(sat['rps_max'])}) "
                     f"| {ratio} | {cpu_ratio} | {_ms(sat['p50_us'])} / {_ms(sat['p99_us'])} / {_ms(sat['p999_us'])} "
                     f"| {_num(sat['cpu_us_per_req'])} | {_num(sat.get('cpu_share'), '{:.2f}')} "
                     f"| {_num(_pct(sat.get('shadow_dropped_share')), '{:.0f}%')} | {sat['non_2xx']} |")
    for rate in res.get("rates", []):
        lbl = rate["label"]
        lines += ["", f"## Fixed rate: {lbl} ({rate['rps']:,.0f} req/s offered)", "",
                  "| scenario | achieved req/s | p50 / p99 / p99.9 ms (corrected) | p99 uncorrected ms "
                  "| generator lag p50 / p99 µs | CPU µs/req | shadow jobs dropped | non-2xx |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, e in res["scenarios"].items():
            f = e["fixed"].get(lbl)
            if not f:
                continue
            lines.append(f"| {name} | {_num(f['achieved_rps'])} | {_ms(f['p50_us'])} / {_ms(f['p99_us'])} / "
                         f"{_ms(f['p999_us'])} | {_ms(f['uncorrected_p99_us'])} | {_num(f['gen_lag_p50_us'])} / {_num(f['gen_lag_p99_us'])} "
                         f"| {_num(f.get('cpu_us_per_req'))} | {_num(f.get('shadow_dropped')) if e.get('counters') else '—'} "
                         f"| {f['non_2xx']} |")
    lines += ["", "## Shadow work and memory", "",
              "| scenario | shadow jobs enqueued / completed / dropped | sink records written | RSS per process MiB "
              "(first → last, growth from the middle to the last third of the run) |", "|---|---:|---:|---|"]
    for name, e in res["scenarios"].items():
        c = e.get("counters") or {}
        shadow = (f"{c.get('shadowlane_shadow_enqueued_total', 0):,.0f} / {c.get('shadowlane_shadow_completed_total', 0):,.0f}"
                  f" / {c.get('shadowlane_shadow_dropped_total', 0):,.0f}") if c else "—"
        written = c.get("shadowlane_sink_records_total.written") if c else None
        if e.get("file_records") is not None:
            written = f"{_num(written)} ({e['file_records']:,} lines in files)"
        else:
            written = _num(written)
        mem = "; ".join(f"{srv.split('.')[-1] if '.' in srv else 'server'} {p['first_mib']:.0f}→{p['last_mib']:.0f} "
                        f"({p['growth_mib']:+.1f})" for srv, procs in e["memory"].items() for p in procs)
        lines.append(f"| {name} | {shadow} | {written} | {mem or '—'} |")
    onnx = [r for r in res.get("onnx_alone", []) if "onnxruntime_run" in r]
    if onnx:
        run50 = sorted(r["onnxruntime_run"]["p50_us"] for r in onnx)[len(onnx) // 2]
        run99 = sorted(r["onnxruntime_run"]["p99_us"] for r in onnx)[len(onnx) // 2]
        all50 = sorted(r["inline_compute"]["p50_us"] for r in onnx)[len(onnx) // 2]
        all99 = sorted(r["inline_compute"]["p99_us"] for r in onnx)[len(onnx) // 2]
        lines += ["", "## onnxruntime alone (tight loop, no HTTP, CPU 0)", "",
                  f"`run` of the credit model: p50 {run50:.1f} µs, p99 {run99:.1f} µs; parse + row + run + reply: "
                  f"p50 {all50:.1f} µs, p99 {all99:.1f} µs."]
    lines += ["", "## Targets (reported, not asserted)", "", "| target | value | goal | met |", "|---|---:|---:|---|"]
    for t in res["targets"]:
        val = "—" if t["value"] is None else f"{t['value']:.2f}"
        if t.get("by_cpu") is not None:
            val += f" (by CPU/req: {t['by_cpu']:.2f})"
        if t.get("by_cpu_half") is not None:
            val += f"; by CPU/req at the half rate, nothing dropped: {t['by_cpu_half']:.2f}"
        dropped = (t.get("detail") or {}).get("shadow_dropped")
        if dropped:
            val += f"; {dropped:,.0f} shadow jobs dropped (queue full) during the run"
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {val} | {t['cmp']} {t['goal']} | {met} |")
    if res["not_available"]:
        lines += ["", "## Not available in this run", ""]
        lines += [f"- {k}: {why}" for k, why in res["not_available"].items()]
    return "\n".join(lines) + "\n"


def write(res: dict[str, Any], suffix: str = "") -> tuple[Path, Path]:
    """Write `<date>-<host><suffix>.json` and `.md` under bench/results/; returns both paths."""
    res.setdefault("date", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    RESULTS.mkdir(exist_ok=True)
    stem = f"{dt.date.today().isoformat()}-{res['machine']['host']}{suffix}"
    jpath, mpath = RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"
    jpath.write_text(json.dumps(res, indent=1, default=str) + "\n")
    mpath.write_text(markdown(res))
    return jpath, mpath
