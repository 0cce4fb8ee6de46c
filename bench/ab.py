"""A/B a change to the proxy: two copies of the code, same scenario, interleaved repetitions.

    .venv/bin/python bench/ab.py --a HEAD --scenario sl-shadow-file [--b WORKTREE] [--reps 6] [--rate 2000]

`--a`/`--b` are git refs (exported with `git archive` into a temporary directory; the checkout is
not touched), WORKTREE for the files as they are now, or a directory holding a copy of
proxy/, shadowlane/ and router/. Each side runs its own server, pinned to
CPU 0, with its copy first on PYTHONPATH. Prints, per repetition and as medians, saturation req/s
and CPU µs per request (the figure other tenants cannot distort) and, with --rate, p50/p99 of an
open-loop run. This is how the before/after numbers in optimisation commits are made.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load  # noqa: E402
from bench.procs import Server, free_port  # noqa: E402
from bench.scenarios import PY, ROOT, Context, deploy_config  # noqa: E402

SCENARIOS = {
    "sl-champion": {},
    "sl-shadow-file": {"shadow": True, "sink": "file"},
    "sl-challengers": {"shadow": True, "challengers": True, "sink": "file"},
    "sl-shadow-none": {"shadow": True, "sink": "none"},
}


def _tree(ref: str, work: Path) -> Path:
    if ref == "WORKTREE":
        return ROOT
    if Path(ref).is_dir():  # a prepared copy (e.g. a prototype outside the checkout)
        return Path(ref).resolve()
    out = work / f"tree-{ref.replace('/', '_')}"
    out.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "proxy", "shadowlane", "router"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="git ref of the 'before' side, or WORKTREE")
    ap.add_argument("--b", default="WORKTREE", help="git ref of the 'after' side (default: WORKTREE)")
    ap.add_argument("--scenario", default="sl-shadow-file", choices=sorted(SCENARIOS))
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--rate", type=float, default=0, help="also an open-loop run at this rate")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="shadowlane-ab-"))
    ctx = Context(work)
    servers: dict[str, Server] = {}
    try:
        for side, ref in (("A", args.a), ("B", args.b)):
            tree = _tree(ref, work)
            cfg = deploy_config(ctx, f"{side}-{args.scenario}", **SCENARIOS[args.scenario])
            port = free_port()
            argv_ = [PY, "-m", "shadowlane", "serve", "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port)]
            servers[side] = Server(f"{side} ({ref})", argv_, port, ctx.log(side), env={"PYTHONPATH": str(tree)},
                                   cwd=str(tree), ready_path="/v2/health/ready")
            servers[side].start()
        wrk = load.Wrk()
        rows: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
        for rep in range(args.reps):
            for side in (("A", "B") if rep % 2 == 0 else ("B", "A")):
                s = servers[side]
                wrk.run(s.port, duration_s=1)
                c0 = s.cpu_seconds()
                r = wrk.run(s.port, duration_s=args.seconds)
                row = {"rps": r["rps"], "cpu": (s.cpu_seconds() - c0) / r["requests"] * 1e6}
                if args.rate:
                    f = load.fixed_rate(s.port, rate=args.rate, duration_s=args.seconds)
                    row.update(p50=f["p50_us"] or 0, p99=f["p99_us"] or 0)
                rows[side].append(row)
                extra = f"  p50 {row['p50'] / 1000:.2f} p99 {row['p99'] / 1000:.2f} ms" if args.rate else ""
                print(f"rep {rep + 1} {s.name:24s} {row['rps']:8.0f} req/s  {row['cpu']:6.1f} CPU µs/req{extra}",
                      flush=True)
    finally:
        for s in servers.values():
            s.stop()
    med = {side: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for side, rs in rows.items()}
    cpu_ratio = statistics.median(b["cpu"] / a["cpu"] for a, b in zip(rows["A"], rows["B"]))
    print(f"\nmedian A ({args.a}): {med['A']['rps']:.0f} req/s, {med['A']['cpu']:.1f} CPU µs/req")
    print(f"median B ({args.b}): {med['B']['rps']:.0f} req/s, {med['B']['cpu']:.1f} CPU µs/req")
    print(f"B/A CPU per request (median of paired repetitions): {cpu_ratio:.3f}")
    if args.rate:
        print(f"p99 at {args.rate:g}/s: A {med['A']['p99'] / 1000:.2f} ms, B {med['B']['p99'] / 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
