"""The benchmark loop shared by bench/run.py (everything) and bench/hotpath.py (issue 2's three).

1. start every available scenario's servers at once, pinned to the server CPU (idle servers cost
   ~nothing; keeping them up lets memory be sampled over the whole run);
2. saturation: for each repetition, every scenario in turn (order rotated per repetition, so
   drift on this shared machine spreads over all of them): wrk warm-up, then a measured wrk run,
   with the server processes' CPU time around it;
3. fixed rates: the same interleaving with the open-loop generator at each offered rate; "half"
   is half the median saturation throughput of the reference scenario measured in step 2;
4. scrape shadowlane's counters, stop everything, count shadow records, aggregate: medians over
   repetitions, and ratios to each scenario's baseline taken per repetition (pairs measured
   seconds apart) then the median of those.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import load
from bench.procs import SERVER_CPU, RssSampler, Server, rss_summary
from bench.scenarios import ROOT, Context, Scenario, has_wrk


@dataclass
class Settings:
    reps: int = 3
    sat_s: float = 4.0
    warm_s: float = 1.0
    fixed_s: float = 4.0
    connections: int = 16
    rates: tuple[str, ...] = ("1000", "half")  # absolute req/s, or "half" of the reference saturation
    reference: str = "sl-champion"  # "half" is half of this scenario's saturation throughput
    settle_s: float = 0.5
    kafka: bool = True


def machine() -> dict[str, Any]:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor())
    versions = {}
    for dist in ("starlette", "uvicorn", "uvloop", "httptools", "granian", "orjson", "onnxruntime", "numpy",
                 "aiokafka", "locust", "shadowlane"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    for tool, args in (("wrk", ["wrk", "-v"]), ("nginx", ["nginx", "-v"])):
        try:
            out = subprocess.run(args, capture_output=True, text=True, timeout=5)
            m = re.search(r"(\d+\.\d+\.\d+)", out.stdout + out.stderr)
            versions[tool] = m.group(1) if m else None
        except OSError:
            versions[tool] = None
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return {"host": platform.node(), "cores": os.cpu_count(), "cpu_model": model,
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(), "kernel": platform.release(), "versions": versions,
            "git": git.stdout.strip(), "loadavg_start": os.getloadavg()}


def _start_kafka(ctx: Context) -> None:
    """A broker from scripts/kafka.sh on free ports, pinned to the generator CPU (in production the
    broker is elsewhere; here it must not take the server's core)."""
    script = ROOT / "scripts" / "kafka.sh"
    if not script.exists():
        ctx.kafka_missing = "scripts/kafka.sh is not there"
        return
    from bench.procs import free_port

    port, cport = free_port(), free_port()
    d = ctx.work / "kafka"
    proc = subprocess.run(["taskset", "-c", "1", str(script), "up", "--dir", str(d), "--port", str(port),
                           "--controller-port", str(cport)], capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        ctx.kafka_missing = f"the Kafka broker did not start: {(proc.stderr or proc.stdout).strip()[-300:]}"
        return
    ctx.kafka_bootstrap = f"127.0.0.1:{port}"
    ctx.kafka_missing = None


def _stop_kafka(ctx: Context) -> None:
    if ctx.kafka_bootstrap:
        subprocess.run([str(ROOT / "scripts" / "kafka.sh"), "down", "--dir", str(ctx.work / "kafka")],
                       capture_output=True, timeout=60)


def _scrape(port: int) -> dict[str, float]:
    """shadowlane's shadow and sink counters, summed over label sets."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for ln in text.splitlines():
        m = re.match(r'^(shadowlane_(?:shadow_(?:enqueued|completed|failed|dropped)_total|sink_records_total))'
                     r'(\{[^}]*\})?\s+([0-9.e+-]+)$', ln)
        if m:
            key = m.group(1)
            outcome = re.search(r'outcome="(\w+)"', m.group(2) or "")
            if outcome:
                key += "." + outcome.group(1)
            out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


def _shadow_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Shadow jobs mirrored and dropped (queue full) between two scrapes."""
    def d(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)
    dropped = d("shadowlane_shadow_dropped_total")
    return {"shadow_dropped": dropped, "shadow_mirrored": d("shadowlane_shadow_enqueued_total") + dropped}


def _count_records(d: Path | None) -> int | None:
    if d is None or not d.exists():
        return None
    n = 0
    for f in d.iterdir():
        if f.is_file() and ".jsonl" in f.name:
            with open(f, "rb") as fh:
                n += sum(1 for _ in fh)
    return n


def _cpu(servers: list[Server]) -> float:
    """CPU seconds of the servers on the server CPU (a decoupled shadow-worker, pinned with the
    generators, stands for work done elsewhere and is not counted)."""
    return sum(s.cpu_seconds() for s in servers if s.cpu == SERVER_CPU)


def _onnx_alone() -> dict[str, Any]:
    cmd = ["taskset", "-c", "0", str(ROOT / ".venv/bin/python"), "-m", "bench.servers.onnx_alone",
           "--iterations", "20000"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    if proc.returncode != 0:
        return {"error": proc.stderr[-500:]}
    return json.loads(proc.stdout)


def _ms(us: float | None) -> str:
    return "     —" if us is None else f"{us / 1000:6.2f}"


def _median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def run_suite(scenarios: list[Scenario], settings: Settings, *, log=print) -> dict[str, Any]:  # noqa: C901
    """Run `scenarios` as described in the module doc; returns the result document."""
    started = time.time()
    result: dict[str, Any] = {"machine": machine(), "settings": vars(settings).copy(), "not_available": {},
                              "scenarios": {}, "method": __doc__}
    missing_wrk = has_wrk()
    if missing_wrk:
        raise SystemExit(f"cannot run: {missing_wrk}")
    work = Path(tempfile.mkdtemp(prefix="shadowlane-bench-"))
    ctx = Context(work)
    if settings.kafka and any(s.name in ("sl-shadow-kafka", "sl-decoupled") for s in scenarios):
        log("starting a Kafka broker (scripts/kafka.sh) ...")
        _start_kafka(ctx)
    live: list[tuple[Scenario, list[Server]]] = []
    all_servers: list[Server] = []
    try:
        for sc in scenarios:
            why = sc.needs(ctx)
            if why:
                log(f"not available: {sc.name}: {why}")
                result["not_available"][sc.name] = why
                continue
            servers = sc.build(ctx)
            try:
                for s in servers:
                    s.start()
                    all_servers.append(s)
            except RuntimeError as err:
                why = f"did not start: {str(err).splitlines()[0]}"
                log(f"not available: {sc.name}: {why}")
                result["not_available"][sc.name] = why
                for s in servers:
                    s.stop()
                continue
            live.append((sc, servers))
            log(f"started {sc.name} on port {servers[-1].port}")
        data: dict[str, dict[str, Any]] = {sc.name: {"sat": [], "fixed": {}} for sc, _ in live}
        onnx_runs = []
        wrk = load.Wrk()
        with RssSampler(all_servers):
            # ---- saturation, interleaved
            for rep in range(settings.reps):
                onnx_runs.append(_onnx_alone())
                order = live[rep % len(live):] + live[:rep % len(live)] if live else []
                for sc, servers in order:
                    target = servers[-1]
                    wrk.run(target.port, duration_s=settings.warm_s,
                                                 connections=settings.connections)
                    k0 = _scrape(target.port) if sc.metrics else {}
                    c0 = _cpu(servers)
                    r = wrk.run(target.port, duration_s=settings.sat_s,
                                                     connections=settings.connections)
                    cpu = _cpu(servers) - c0
                    if sc.metrics:
                        time.sleep(0.3)  # let the shadow queue settle before reading its counters
                        r.update(_shadow_delta(k0, _scrape(target.port)))
                    r["cpu_us_per_req"] = cpu / max(1, r["requests"]) * 1e6
                    # Share of the server core the scenario got: well below 1 means other
                    # tenants of the machine took the rest, and req/s understates it.
                    r["cpu_share"] = cpu / (r["duration_us"] / 1e6)
                    r["rep"] = rep
                    data[sc.name]["sat"].append(r)
                    log(f"[sat rep {rep + 1}/{settings.reps}] {sc.name:26s} {r['rps']:9.0f} req/s  "
                        f"p50 {r['p50_us'] / 1000:6.2f} ms  p99 {r['p99_us'] / 1000:6.2f} ms  "
                        f"CPU {r['cpu_us_per_req']:6.0f} µs/req (share {r['cpu_share']:.2f})  non-2xx {r['non_2xx']}"
                        + (f"  shadow dropped {r['shadow_dropped']:.0f}/{r['shadow_mirrored']:.0f}"
                           if r.get("shadow_mirrored") else ""))
                    time.sleep(settings.settle_s)
            # ---- fixed rates, interleaved
            # Half of the *lowest* saturation figure of the reference: on a shared machine the
            # median can be a rate the server cannot hold while a neighbour takes its core.
            ref = data.get(settings.reference)
            ref_rps = min(r["rps"] for r in ref["sat"]) if ref and ref["sat"] else None
            rates: list[tuple[str, float]] = []
            for spec in settings.rates:
                if spec == "half":
                    if ref_rps:
                        rates.append((f"half of {settings.reference}", round(ref_rps / 2, -1)))
                    else:
                        log(f"not available: the 'half' rate: no saturation figure for {settings.reference}")
                else:
                    rates.append((f"{float(spec):g}/s", float(spec)))
            result["rates"] = [{"label": lbl, "rps": rps} for lbl, rps in rates]
            for rep in range(settings.reps):
                order = live[rep % len(live):] + live[:rep % len(live)] if live else []
                for sc, servers in order:
                    for lbl, rps in rates:
                        k0 = _scrape(servers[-1].port) if sc.metrics else {}
                        c0 = _cpu(servers)
                        r = load.fixed_rate(servers[-1].port, rate=rps, duration_s=settings.fixed_s,
                                            warmup_s=settings.warm_s)
                        if sc.metrics:
                            r.update(_shadow_delta(k0, _scrape(servers[-1].port)))
                        r["cpu_us_per_req"] = (_cpu(servers) - c0) / max(1, rps * (settings.fixed_s + settings.warm_s)) * 1e6
                        r["rep"] = rep
                        data[sc.name]["fixed"].setdefault(lbl, []).append(r)
                        log(f"[{lbl} rep {rep + 1}/{settings.reps}] {sc.name:26s} offered {rps:7.0f} "
                            f"achieved {r['achieved_rps']:7.0f}  p50 {_ms(r['p50_us'])} ms  "
                            f"p99 {_ms(r['p99_us'])} ms  p99.9 {_ms(r['p999_us'])} ms  "
                            f"gen lag p50/p99 {_ms(r['gen_lag_p50_us'])}/{_ms(r['gen_lag_p99_us'])} ms")
                        time.sleep(settings.settle_s)
        counters = {sc.name: _scrape(servers[-1].port) for sc, servers in live if sc.metrics}
    finally:
        for s in reversed(all_servers):
            s.stop()
        _stop_kafka(ctx)
    for sc, servers in live:
        d = data[sc.name]
        entry: dict[str, Any] = {"title": sc.title, "group": sc.group, "baseline": sc.baseline, "runs": d}
        entry["sat"] = {k: _median([r[k] for r in d["sat"]])
                        for k in ("rps", "p50_us", "p99_us", "p999_us", "cpu_us_per_req", "cpu_share")}
        entry["sat"]["rps_min"] = min(r["rps"] for r in d["sat"])
        entry["sat"]["rps_max"] = max(r["rps"] for r in d["sat"])
        entry["sat"]["non_2xx"] = sum(r["non_2xx"] for r in d["sat"])
        mirrored = sum(r.get("shadow_mirrored", 0) for r in d["sat"])
        entry["sat"]["shadow_dropped_share"] = (sum(r.get("shadow_dropped", 0) for r in d["sat"]) / mirrored
                                                if mirrored else None)
        entry["fixed"] = {lbl: {k: _median([r[k] for r in runs]) for k in
                                ("offered_rps", "achieved_rps", "p50_us", "p99_us", "p999_us", "gen_lag_p50_us", "gen_lag_p99_us",
                                 "uncorrected_p99_us", "cpu_us_per_req")}
                          | {"non_2xx": sum(r["non_2xx"] for r in runs),
                             "shadow_dropped": sum(r.get("shadow_dropped", 0) for r in runs)}
                          for lbl, runs in d["fixed"].items()}
        entry["memory"] = {s.name: rss_summary(s) for s in servers}
        if sc.name in counters:
            entry["counters"] = counters[sc.name]
        n = _count_records(sc.sink_dir(ctx))
        if n is not None:
            entry["file_records"] = n
        result["scenarios"][sc.name] = entry
    _ratios(result, live)
    result["onnx_alone"] = onnx_runs
    result["targets"] = _targets(result)
    result["elapsed_s"] = round(time.time() - started, 1)
    return result


def _ratios(result: dict[str, Any], live: list[tuple[Scenario, list[Server]]]) -> None:
    scs = result["scenarios"]
    for name, e in scs.items():
        base = e["baseline"]
        if base not in scs:
            continue
        mine = {r["rep"]: r["rps"] for r in e["runs"]["sat"]}
        theirs = {r["rep"]: r["rps"] for r in scs[base]["runs"]["sat"]}
        per_rep = [mine[k] / theirs[k] for k in mine if k in theirs and theirs[k]]
        e["rps_ratio"] = _median(per_rep)
        e["rps_ratio_per_rep"] = per_rep
        # The same ratio from CPU time per request: robust to other tenants taking the core.
        mine_cpu = {r["rep"]: r["cpu_us_per_req"] for r in e["runs"]["sat"]}
        theirs_cpu = {r["rep"]: r["cpu_us_per_req"] for r in scs[base]["runs"]["sat"]}
        e["cpu_ratio"] = _median([theirs_cpu[k] / mine_cpu[k] for k in mine_cpu if k in theirs_cpu and mine_cpu[k]])


def _fixed(result: dict[str, Any], name: str, lbl_prefix: str, key: str) -> float | None:
    e = result["scenarios"].get(name)
    if not e:
        return None
    for lbl, v in e["fixed"].items():
        if lbl.startswith(lbl_prefix):
            return v.get(key)
    return None


def _paired_p99(result: dict[str, Any], on: str, off: str, rate: str = "half") -> list[float]:
    """p99(on) / p99(off) at one fixed rate, per repetition (the two ran seconds apart)."""
    def runs(name: str) -> dict[int, float]:
        e = result["scenarios"].get(name)
        if not e:
            return {}
        for lbl, rs in e["runs"]["fixed"].items():
            if lbl.startswith(rate):
                return {r["rep"]: r["p99_us"] for r in rs if r["p99_us"]}
        return {}
    a, b = runs(on), runs(off)
    return [a[k] / b[k] for k in a if k in b]


def _targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, reported (never asserted)."""
    scs = result["scenarios"]
    out = []

    def ratio(name: str, base: str) -> float | None:
        e = scs.get(name)
        return e.get("rps_ratio") if e and e.get("baseline") == base else None

    def by_cpu(name: str) -> float | None:
        e = scs.get(name)
        return e.get("cpu_ratio") if e else None

    def cpu_at_half(name: str, base: str) -> float | None:
        # CPU per request at the fixed 'half' rate, where shadow queues do not overflow: the
        # capacity ratio of a proxy that really shadows everything.
        a, b = _fixed(result, base, "half", "cpu_us_per_req"), _fixed(result, name, "half", "cpu_us_per_req")
        return a / b if a and b else None

    def dropped(name: str) -> dict[str, float]:
        # Shadow jobs dropped (queue full) flatter req/s: the shadow work was not done.
        c = (scs.get(name) or {}).get("counters") or {}
        return {"shadow_enqueued": c.get("shadowlane_shadow_enqueued_total", 0.0),
                "shadow_dropped": c.get("shadowlane_shadow_dropped_total", 0.0)}

    out.append({"target": "champion + 100% shadow (file sink) >= 0.8x bare starlette req/s (stretch 1.0x)",
                "value": ratio("sl-shadow-file", "starlette-const"), "goal": 0.8, "cmp": ">=",
                "by_cpu": by_cpu("sl-shadow-file"), "by_cpu_half": cpu_at_half("sl-shadow-file", "starlette-const"),
                "detail": dropped("sl-shadow-file")})
    out.append({"target": "champion + 100% shadow (Kafka sink) >= 0.75x bare starlette req/s",
                "value": ratio("sl-shadow-kafka", "starlette-const"), "goal": 0.75, "cmp": ">=",
                "by_cpu": by_cpu("sl-shadow-kafka"), "by_cpu_half": cpu_at_half("sl-shadow-kafka", "starlette-const"),
                "detail": dropped("sl-shadow-kafka")})
    on = _fixed(result, "sl-shadow-file", "half", "p99_us")
    off = _fixed(result, "sl-champion", "half", "p99_us")
    paired = _paired_p99(result, "sl-shadow-file", "sl-champion")
    out.append({"target": "champion p99 shadow on / shadow off at half of saturation <= 1.05 "
                          "(median of per-repetition ratios)",
                "value": _median(paired) if paired else None, "goal": 1.05, "cmp": "<=",
                "detail": {"shadow_on_p99_us": on, "shadow_off_p99_us": off, "per_rep": paired}})
    light = _paired_p99(result, "sl-shadow-file", "sl-champion", "1000")
    out.append({"target": "(context) the same p99 ratio at 1,000 req/s", "value": _median(light) if light else None,
                "goal": 1.05, "cmp": "<=", "detail": {"per_rep": light}})
    direct = _fixed(result, "upstream-direct", "1000", "p50_us")
    ngx = _fixed(result, "nginx-proxy", "1000", "p50_us")
    sl = _fixed(result, "sl-upstream", "1000", "p50_us")
    added = (sl - direct) / (ngx - direct) if None not in (direct, ngx, sl) and ngx > direct else None
    out.append({"target": "upstream mode adds <= 2x nginx's added p50 (at 1000 req/s)", "value": added,
                "goal": 2.0, "cmp": "<=", "detail": {"direct_p50_us": direct, "nginx_p50_us": ngx,
                                                     "shadowlane_p50_us": sl}})
    growth = [p["growth_mib"] for e in scs.values() for procs in e["memory"].values() for p in procs]
    out.append({"target": "memory per worker flat over the run (max growth, MiB)",
                "value": max(growth) if growth else None, "goal": 10.0, "cmp": "<="})
    for t in out:
        v = t["value"]
        t["met"] = None if v is None else (v >= t["goal"] if t["cmp"] == ">=" else v <= t["goal"])
    return out

