"""The whole benchmark suite, one command: `.venv/bin/python bench/run.py [--quick]`.

Runs every scenario of bench/scenarios.py that is available on this machine (the others are
listed as "not available: <why>") on loopback, and writes bench/results/<date>-<host>.json and
.md. A full run takes ~15 minutes; --quick (~4 minutes) is one short repetition, for checking.
Not part of the test suite: numbers on a shared machine are noisy, compare the ratios.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report  # noqa: E402
from bench.scenarios import by_name, catalogue  # noqa: E402
from bench.suite import Settings, run_suite  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one short repetition (a check, not a measurement)")
    ap.add_argument("--only", nargs="+", metavar="SCENARIO", help="run just these scenarios")
    ap.add_argument("--reps", type=int, help="repetitions (default 3, --quick 1)")
    ap.add_argument("--no-kafka", action="store_true", help="do not start a Kafka broker")
    ap.add_argument("--suffix", default="", help="appended to the result file names")
    args = ap.parse_args(argv)
    settings = Settings(reps=1, sat_s=2, warm_s=1, fixed_s=2) if args.quick else Settings()
    if args.reps:
        settings.reps = args.reps
    settings.kafka = not args.no_kafka
    scenarios = by_name(args.only) if args.only else catalogue()
    res = run_suite(scenarios, settings)
    jpath, mpath = report.write(res, args.suffix + ("-quick" if args.quick else ""))
    print(mpath.read_text())
    print(f"wrote {jpath} and {mpath}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
