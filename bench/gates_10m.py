"""A gate run over 10 million shadow pairs with labels, on one core, against pandas + scikit-learn.

    .venv/bin/python bench/gates_10m.py [--n 10000000] [--json-records 300000] [--cpu 1]

1. Generates the pairs as numpy columns (.npy files; the generation is not timed): scores of a
   champion and a candidate, ground truth (80 % labelled, in shuffled order as labels arrive),
   statuses, latencies, two segment attributes, and a 1M-row feature sample of 10 features.
2. `gate`: loads the columns, joins the labels and runs `gates.evaluate.evaluate` (evidence checks,
   five gates, divergence overall, per segment and per region) in a child process pinned to one
   CPU; prints its wall time and peak RSS.
3. `baseline`: the same figures computed straightforwardly with pandas (merge, groupby, qcut) and
   scikit-learn / scipy (roc_auc_score, ks_2samp), in another pinned child process.
   The two must agree (checked), then the ratio is printed.
4. `json`: the JSON-lines reader on `--json-records` real shadow records, in records/s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEGMENTS = ["consumer", "small_business", "student", "retired", "self_employed"]
REGIONS = ["north", "south", "east", "west"]
FEATURES = [f"f{j}" for j in range(10)]
SAMPLE_ROWS = 1_000_000
CONFIG = {"latency": {"budget_ms": 50}, "accuracy": {"min_auc": 0.6, "min_delta": -0.01},
          "fairness": {"attribute": "segment"}, "evidence": {"min_duration_h": 24}}


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not getrusage: ru_maxrss survives fork + exec, so a child
    would report the parent's size at fork time."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------ data


def generate(n: int, d: Path) -> None:
    rng = np.random.default_rng(42)
    seg = rng.choice(len(SEGMENTS), n, p=[0.6, 0.12, 0.1, 0.1, 0.08]).astype(np.int32)
    region = rng.integers(0, len(REGIONS), n).astype(np.int32)
    y = (rng.random(n) < 0.22).astype(np.int8)
    common = rng.normal(0, 1, n)
    champ = 1 / (1 + np.exp(-(1.3 * y - 1.6 + 0.9 * common + rng.normal(0, 0.7, n))))
    cand = 1 / (1 + np.exp(-(1.5 * y - 1.6 + 0.9 * common + rng.normal(0, 0.6, n) + 0.15 * (seg == 1))))
    status = np.where(rng.random(n) < 0.004, 2, 0).astype(np.int8)  # 0.4 % timeouts
    cand_f = cand.astype(np.float32).astype(np.float64)
    cand_f[status != 0] = np.nan
    cols = {
        "request_hash": rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + np.uint64(1),
        "ts": 1_700_000_000 + np.sort(rng.random(n)) * 72 * 3600,
        "kind": np.zeros(n, np.int8), "rows": np.ones(n, np.int32),
        "champion_status": np.zeros(n, np.int8), "shadow_status": status,
        "champion_latency_ms": rng.lognormal(0.7, 0.3, n).astype(np.float32),
        "shadow_latency_ms": rng.lognormal(1.3, 0.4, n).astype(np.float32),
        "champion_version": np.ones(n, np.int32), "segment": seg, "region": region,
        "champion_score": champ.astype(np.float32).astype(np.float64), "shadow_score": cand_f,
        "champion_label": (champ > 0.5).astype(np.int8),
        "shadow_label": np.where(status == 0, cand > 0.5, -1).astype(np.int8),
    }
    labelled = np.flatnonzero(rng.random(n) < 0.8)
    rng.shuffle(labelled)  # labels arrive in their own order
    cols["label_hash"] = cols["request_hash"][labelled]
    cols["label_row"] = np.zeros(labelled.size, np.int32)
    cols["label"] = y[labelled]
    cols["label_ts"] = cols["ts"][labelled] + 86400
    X = rng.normal(0, 1, (SAMPLE_ROWS, len(FEATURES)))
    X[:, 3] += 0.3  # one feature drifted since training
    for j, name in enumerate(FEATURES):
        cols[f"feature_{name}"] = X[:, j]
    train = rng.normal(0, 1, (200_000, len(FEATURES)))
    from gates.drift_stats import training_stats

    (d / "stats.json").write_text(json.dumps(training_stats(train, FEATURES)))
    for k, v in cols.items():
        np.save(d / f"{k}.npy", v)


def load(d: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.load(p) for p in d.glob("*.npy")}


# ------------------------------------------------------------------------------ gate


def run_gate(d: Path) -> dict[str, Any]:
    from gates.evaluate import evaluate
    from gates.labels import Labels
    from gates.reader import Categorical, FeatureSample, Records, Rows, ShadowFrame

    t0, cpu0 = time.perf_counter(), time.process_time()
    c = load(d)
    n = c["ts"].size
    records = Records(request_hash=c["request_hash"], ts=c["ts"], kind=c["kind"], rows=c["rows"],
                      champion_status=c["champion_status"], shadow_status=c["shadow_status"],
                      champion_latency_ms=c["champion_latency_ms"], shadow_latency_ms=c["shadow_latency_ms"],
                      champion_version=c["champion_version"],
                      attributes={"segment": Categorical(c["segment"], SEGMENTS),
                                  "region": Categorical(c["region"], REGIONS)})
    rows = Rows(record=np.arange(n, dtype=np.int64), row=np.zeros(n, np.int32),
                champion_score=c["champion_score"], shadow_score=c["shadow_score"],
                champion_label=c["champion_label"], shadow_label=c["shadow_label"])
    features = FeatureSample(columns={f: c[f"feature_{f}"] for f in FEATURES},
                             json_types={f: {"float"} for f in FEATURES}, names_seen=set(FEATURES),
                             inputs_seen=set(FEATURES), tensor_shapes={}, sample_share=SAMPLE_ROWS / n,
                             records_with_features=n, records_without_features=0)
    frame = ShadowFrame(candidate=("credit-risk", 2), records=records, rows=rows, features=features,
                        champions={("credit-risk", 1)}, lines_read=n)
    t_load = time.perf_counter()
    labels = Labels.from_arrays(c["label_hash"], c["label_row"], c["label"], c["label_ts"])
    del c
    sig = {"inputs": json.dumps([{"type": "double", "name": f} for f in FEATURES])}
    ev = evaluate(frame, candidate=("credit-risk", 2), config=CONFIG, labels=labels, signature=sig,
                  training_stats=str(d / "stats.json"))
    t1 = time.perf_counter()
    return {"seconds": t1 - t0, "cpu_seconds": time.process_time() - cpu0, "load_seconds": t_load - t0,
            "peak_rss_mb": peak_rss_mb(), "phases": ev.summary["seconds"],
            "verdict": ev.verdict, "figures": figures_of(ev)}


def figures_of(ev: Any) -> dict[str, float]:
    acc, lat, fair, drift = (ev.gate(g).values for g in ("accuracy", "latency", "fairness", "drift"))
    d = ev.divergence["overall"]
    out = {"auc_candidate": acc["auc_candidate"], "auc_champion": acc["auc_champion"],
           "labelled": acc["labelled_rows"], "latency_p95": lat["candidate_ms"],
           "agreement": d["agreement_rate"], "mean_abs_diff": d["mean_abs_diff"], "p99_abs_diff": d["p99_abs_diff"],
           "psi": d["psi"], "ks": d["ks"]}
    for g, v in fair["groups"].items():
        out[f"approval[{g}]"] = v["approval_candidate"]
        out[f"auc[{g}]"] = v["auc_candidate"]
    for attr, segs in ev.divergence["segments"].items():
        for s, v in segs.items():
            out[f"ks[{attr}={s}]"] = v["ks"]
            out[f"psi[{attr}={s}]"] = v["psi"]
    for f, v in drift["features"].items():
        out[f"drift_psi[{f}]"] = v["psi"]
    return out


# ------------------------------------------------------------------------------ baseline


def run_baseline(d: Path) -> dict[str, Any]:
    """The same figures the straightforward way: a DataFrame, a merge, groupbys, sklearn, scipy."""
    import pandas as pd
    from scipy.stats import ks_2samp
    from sklearn.metrics import roc_auc_score

    def psi(expected: np.ndarray, actual: np.ndarray) -> float:
        e = np.clip(expected / expected.sum(), 1e-4, None)
        a = np.clip(actual / actual.sum(), 1e-4, None)
        return float(np.sum((a - e) * np.log(a / e)))

    def div(sub: pd.DataFrame) -> dict[str, float]:
        diff = (sub.ss - sub.cs).abs()
        inner = np.unique(sub.cs.quantile(np.linspace(0, 1, 11)[1:-1]).to_numpy())
        bins = np.r_[-np.inf, inner, np.inf]
        e = pd.cut(sub.cs, bins, right=False).value_counts(sort=False).to_numpy()
        a = pd.cut(sub.ss, bins, right=False).value_counts(sort=False).to_numpy()
        return {"agreement": float((sub.cl == sub.sl).mean()), "mean_abs_diff": float(diff.mean()),
                "p99_abs_diff": float(diff.quantile(0.99)), "psi": psi(e, a),
                "ks": float(ks_2samp(sub.cs, sub.ss, method="asymp").statistic)}

    t0, cpu0 = time.perf_counter(), time.process_time()
    c = load(d)
    df = pd.DataFrame({"key": c["request_hash"], "ts": c["ts"], "kind": c["kind"], "cst": c["champion_status"],
                       "sst": c["shadow_status"], "slat": c["shadow_latency_ms"],
                       "segment": pd.Categorical.from_codes(c["segment"], SEGMENTS),
                       "region": pd.Categorical.from_codes(c["region"], REGIONS),
                       "cs": c["champion_score"], "ss": c["shadow_score"], "cl": c["champion_label"],
                       "sl": c["shadow_label"]})
    lab = pd.DataFrame({"key": c["label_hash"], "label": c["label"], "lts": c["label_ts"]})
    sample = pd.DataFrame({f: c[f"feature_{f}"] for f in FEATURES})
    del c
    lab = lab.sort_values("lts").drop_duplicates("key", keep="last")
    df = df.merge(lab[["key", "label"]], on="key", how="left")
    cand = df[df.kind == 0]
    out: dict[str, float] = {}
    # evidence
    _ = (cand.ts.max() - cand.ts.min()) / 3600, (cand.sst != 0).mean(), cand.groupby("segment", observed=True).sst.apply(
        lambda s: (s != 0).mean()), df.drop_duplicates("key").segment.value_counts(normalize=True)
    ok = cand[cand.cs.notna() & cand.ss.notna()]
    labelled = ok[ok.label.notna()]
    out["auc_candidate"] = float(roc_auc_score(labelled.label, labelled.ss))
    out["auc_champion"] = float(roc_auc_score(labelled.label, labelled.cs))
    out["labelled"] = len(labelled)
    out["latency_p95"] = float(cand.loc[cand.sst != 1, "slat"].astype(np.float64).quantile(0.95))
    out.update(div(ok))
    for g, sub in ok.groupby("segment", observed=True):
        out[f"approval[{g}]"] = float((sub.sl == 0).mean())
        ls = sub[sub.label.notna()]
        out[f"auc[{g}]"] = float(roc_auc_score(ls.label, ls.ss))
    for attr in ("region", "segment"):
        for g, sub in ok.groupby(attr, observed=True):
            v = div(sub)
            out[f"ks[{attr}={g}]"] = v["ks"]
            out[f"psi[{attr}={g}]"] = v["psi"]
    stats = json.loads((d / "stats.json").read_text())
    for f, s in stats["features"].items():
        bins = np.r_[-np.inf, s["edges"], np.inf]
        counts = pd.cut(sample[f], bins, right=False).value_counts(sort=False).to_numpy()
        out[f"drift_psi[{f}]"] = psi(np.asarray(s["proportions"]), counts)
    t1 = time.perf_counter()
    return {"seconds": t1 - t0, "cpu_seconds": time.process_time() - cpu0, "peak_rss_mb": peak_rss_mb(),
            "figures": out}


# ------------------------------------------------------------------------------ JSON reader


def write_json_log(n: int, d: Path) -> None:
    """`n` shadow records as the proxy writes them (JSON lines in segment files), untimed."""
    import orjson

    from shadowlane.segments import SegmentWriter

    rng = np.random.default_rng(1)
    p = rng.random((n, 2)).astype(np.float32)
    x = rng.normal(size=(n, 10)).astype(np.float32)
    w = SegmentWriter(d / "jsonlog")
    batch = []
    for i in range(n):
        side = {"model": "credit-risk", "version": 1, "variant": "champion", "status": "ok", "latency_ms": 2.0,
                "outputs": {"label": [int(p[i, 0] > 0.5)], "probabilities": [[1 - float(p[i, 0]), float(p[i, 0])]]},
                "error": None}
        shadow = {**side, "version": 2, "variant": "candidate",
                  "outputs": {"label": [int(p[i, 1] > 0.5)], "probabilities": [[1 - float(p[i, 1]), float(p[i, 1])]]}}
        batch.append(orjson.dumps({
            "v": 1, "ts": 1.7e9 + i, "request_id": f"r{i}", "unit_id": f"u{i}", "endpoint": "credit", "protocol": "oip",
            "rows": 1, "champion": side, "shadow": shadow, "features_hash": "xxh3:0000000000000000",
            "features": {f: [float(x[i, j])] for j, f in enumerate(FEATURES)},
            "attributes": {"segment": SEGMENTS[i % 5]}}))
        if len(batch) == 10_000:
            w.write_many(batch)
            batch = []
    w.write_many(batch)
    w.close()


def run_json(n: int, d: Path) -> dict[str, Any]:
    from gates.reader import read_shadow_log

    size = sum(f.stat().st_size for f in (d / "jsonlog").iterdir())
    t0, cpu0 = time.perf_counter(), time.process_time()
    frame = read_shadow_log(d / "jsonlog", ("credit-risk", 2))
    t1 = time.perf_counter()
    cpu = time.process_time() - cpu0
    assert len(frame.records) == n
    return {"seconds": t1 - t0, "cpu_seconds": cpu, "records": n, "records_per_s": n / cpu, "mb": size / 1e6,
            "peak_rss_mb": peak_rss_mb()}


# ------------------------------------------------------------------------------ driver


def child(phase: str, d: Path, cpu: int, extra: list[str]) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--phase", phase, "--workdir", str(d), "--cpu", str(cpu), *extra]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{phase} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(a: dict[str, float], b: dict[str, float]) -> list[str]:
    bad = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if x is None or y is None or not np.isclose(x, y, rtol=1e-9, atol=1e-9):
            bad.append(f"{k}: gate {x} vs baseline {y}")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--json-records", type=int, default=300_000)
    ap.add_argument("--cpu", type=int, default=1, help="CPU the timed children are pinned to")
    ap.add_argument("--workdir")
    ap.add_argument("--phase", choices=["gate", "baseline", "json"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        os.sched_setaffinity(0, {args.cpu})
        d = Path(args.workdir)
        result = {"gate": run_gate, "baseline": run_baseline}.get(args.phase)
        res = result(d) if result else run_json(args.json_records, d)
        print(json.dumps(res))
        return 0
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gates10m-", dir=args.workdir) as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        generate(args.n, d)
        print(f"generated {args.n:,} shadow pairs as numpy columns in {time.perf_counter() - t0:.1f} s "
              f"({sum(p.stat().st_size for p in d.glob('*.npy')) / 1e6:.0f} MB)")
        gate = child("gate", d, args.cpu, [])
        print(f"gate run (gates.evaluate, 1 core):     {gate['seconds']:6.1f} s wall, {gate['cpu_seconds']:6.1f} s CPU  "
              f"(load {gate['load_seconds']:.1f} s; {', '.join(f'{k} {v:.1f} s' for k, v in gate['phases'].items())})  "
              f"peak RSS {gate['peak_rss_mb']:,.0f} MB  verdict {gate['verdict']}")
        base = child("baseline", d, args.cpu, [])
        print(f"baseline (pandas + sklearn, 1 core):   {base['seconds']:6.1f} s wall, {base['cpu_seconds']:6.1f} s CPU  "
              f"peak RSS {base['peak_rss_mb']:,.0f} MB")
        mismatch = compare(gate["figures"], base["figures"])
        print(f"figures compared: {len(gate['figures'])}, mismatches: {len(mismatch)}")
        for m in mismatch:
            print("  MISMATCH", m)
        print(f"gate vs baseline: {base['seconds'] / gate['seconds']:.2f}x by wall time, "
              f"{base['cpu_seconds'] / gate['cpu_seconds']:.2f}x by CPU time (>1 = gate faster)")
        write_json_log(args.json_records, d)
        js = child("json", d, args.cpu, ["--json-records", str(args.json_records)])
        print(f"JSON reader: {js['records']:,} records ({js['mb']:.0f} MB) in {js['seconds']:.1f} s wall, "
              f"{js['cpu_seconds']:.1f} s CPU = {js['records_per_s']:,.0f} records/CPU-s "
              f"(10M records: ~{1e7 / js['records_per_s']:.0f} s); "
              f"peak RSS {js['peak_rss_mb']:,.0f} MB")
        return 1 if mismatch else 0


if __name__ == "__main__":
    sys.exit(main())
