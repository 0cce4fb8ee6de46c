"""Issue 2's benchmark: bare starlette vs shadowlane champion-only vs + 100% shadow (file sink).

`.venv/bin/python bench/hotpath.py [--quick]` prints req/s and p50/p99 at saturation for the three,
their ratios to the bare starlette endpoint (same run, interleaved), and champion p99 with the
shadow on vs off at half of the champion-only saturation rate (open loop, corrected). Writes
bench/results/<date>-<host>-hotpath.{json,md}. The full suite is bench/run.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report  # noqa: E402
from bench.scenarios import by_name  # noqa: E402
from bench.suite import Settings, run_suite  # noqa: E402

SCENARIOS = ["starlette-const", "sl-champion", "sl-shadow-file"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int)
    args = ap.parse_args(argv)
    settings = Settings(reps=1, sat_s=2, warm_s=1, fixed_s=2) if args.quick else Settings(reps=5, fixed_s=5)
    if args.reps:
        settings.reps = args.reps
    settings.rates = ("half",)
    settings.kafka = False
    res = run_suite(by_name(SCENARIOS), settings)
    jpath, mpath = report.write(res, "-hotpath" + ("-quick" if args.quick else ""))
    sc = res["scenarios"]
    print(f"\n{'scenario':18s} {'req/s':>9s} {'x starlette':>12s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for name in SCENARIOS:
        if name not in sc:
            print(f"{name:18s} not available: {res['not_available'].get(name)}")
            continue
        e = sc[name]
        ratio = e.get("rps_ratio")
        print(f"{name:18s} {e['sat']['rps']:9.0f} {'' if ratio is None else f'{ratio:.2f}x':>12s} "
              f"{e['sat']['p50_us'] / 1000:8.2f} {e['sat']['p99_us'] / 1000:8.2f}")
    for t in res["targets"][:3]:
        if t["value"] is not None:
            print(f"{t['target']}: {t['value']:.2f} ({'met' if t['met'] else 'NOT met'})")
    print(f"wrote {jpath} and {mpath}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
