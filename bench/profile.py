"""Profile one scenario under load with py-spy: where the server's CPU goes, per request.

    .venv/bin/python bench/profile.py sl-shadow-file [--seconds 10] [--rate 0] [--top 30]

Starts the scenario's servers (pinned to CPU 0), drives them with wrk (saturation) or the
open-loop generator (`--rate R`), samples the server process with `py-spy record --format raw`
(collapsed stacks, all threads; it pauses the process per sample, which keeps async stacks
consistent), and prints:

- self time by function (top N), as µs per request: share of samples × CPU µs per request;
- inclusive time of the stages of the hot path (frames matched by name), same unit.

Writes the raw stacks to bench/results/profile-<scenario>.txt for flame graphs
(e.g. `inferno-flamegraph` or speedscope).
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load  # noqa: E402
from bench.scenarios import Context, by_name  # noqa: E402
from bench.suite import _start_kafka, _stop_kafka  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PYSPY = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "py-spy"

# Stage name -> substrings of a frame ("function (file:line)") that mark it, checked in order.
STAGES = [
    ("uvicorn/httptools protocol (parse, transport, ASGI glue)", ("uvicorn/protocols/http/",)),
    ("hot path total (HotPath._serve)", ("HotPath._serve (",)),
    ("  read body", ("HotPath._read_body (",)),
    ("  orjson parse", ("parse_json (",)),
    ("  route (router)", ("Assigner.",)),
    ("  decode OIP / MLflow to numpy", ("decode_oip (", "decode_mlflow (")),
    ("  champion predict (backend)", ("Backend.predict (", "Backend.infer (")),
    ("    upstream HTTP client", ("upstream_client.py", "codecs_upstream.py")),
    ("    onnxruntime Session.run (any thread)", ("Session.run (onnxruntime",)),
    ("  encode reply", ("encode_oip (", "encode_mlflow (")),
    ("  ASGI send -> transport", ("RequestResponseCycle.send (",)),
    ("  metrics (prometheus_client)", ("prometheus_client/",)),
    ("  shadow submit", ("ShadowDispatcher.submit (",)),
    ("shadow work on the loop (worker, groups, records)", ("ShadowDispatcher._worker (",
                                                           "ShadowDispatcher._run_group (")),
    ("  shadow model call (inline)", ("ShadowDispatcher._call (",)),
    ("  shadow model thread", ("_DaemonThread._run (",)),
    ("  record building + encode", ("ShadowDispatcher._record (",)),
    ("  features hash", ("features_hash (",)),
    ("  divergence metrics", ("_observe_divergence (",)),
    ("  sink emit", ("Sink.emit (", "Sink.emit_request (")),
    ("  decoupled: request record (publish)", ("ShadowDispatcher._publish (",)),
    ("sink background (flush / produce)", ("Sink._run (", "Sink.flush (", "aiokafka/")),
    ("threads other than MainThread", ("thread_bootstrap", "Thread._bootstrap")),
]


# Leaf frames of a thread that is waiting, not working (py-spy does not always tell idle threads
# apart when a process has several): left out of the totals.
IDLE_LEAVES = ("select (selectors.py", "(concurrent/futures/thread.py:81)", "wait (threading.py", "get (queue.py")


def _summarise(stacks: Path, cpu_us_per_req: float, top: int) -> str:
    self_time: collections.Counter[str] = collections.Counter()
    stage_time: collections.Counter[str] = collections.Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        frames_s, _, count_s = line.rpartition(" ")
        if not frames_s:
            continue
        n = int(count_s)
        frames = frames_s.split(";")
        if any(m in frames[-1] for m in IDLE_LEAVES):
            continue
        total += n
        self_time[frames[-1]] += n
        for stage, marks in STAGES:
            if any(m in f for f in frames for m in marks):
                stage_time[stage] += n
    if not total:
        return "no samples"
    unit = cpu_us_per_req / total
    out = [f"{total} samples; server CPU {cpu_us_per_req:.0f} µs per request (all threads)", "",
           "stage (inclusive)                                        µs/req   share"]
    for stage, _ in STAGES:
        n = stage_time.get(stage, 0)
        out.append(f"{stage:55s} {n * unit:7.1f} {100 * n / total:6.1f}%")
    out += ["", f"top {top} by self time                                         µs/req   share"]
    for frame, n in self_time.most_common(top):
        out.append(f"{frame[:62]:62s} {n * unit:7.1f} {100 * n / total:6.1f}%")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rate", type=float, default=0, help="open-loop rate (0: wrk at saturation)")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--sample-rate", type=int, default=200, help="py-spy samples per second")
    args = ap.parse_args(argv)
    (sc,) = by_name([args.scenario])
    ctx = Context(Path(tempfile.mkdtemp(prefix="shadowlane-profile-")))
    if "kafka" in sc.name or "decoupled" in sc.name:
        _start_kafka(ctx)
    why = sc.needs(ctx)
    if why:
        print(f"not available: {sc.name}: {why}", file=sys.stderr)
        return 1
    servers = sc.build(ctx)
    for s in servers:
        s.start()
    RESULTS.mkdir(exist_ok=True)
    stacks = RESULTS / f"profile-{args.scenario}.txt"
    try:
        target = servers[-1]
        pid = target.processes()[-1].pid  # the worker (uvicorn: the only process; multi: a child)
        wrk = load.Wrk()
        wrk.run(target.port, duration_s=2)  # warm-up
        spy = subprocess.Popen(["taskset", "-c", "1", str(PYSPY), "record", "--pid", str(pid), "--format", "raw",
                                "--output", str(stacks), "--duration", str(int(args.seconds)), "--rate",
                                str(args.sample_rate), "--threads"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        c0 = target.cpu_seconds()
        if args.rate:
            res = load.fixed_rate(target.port, rate=args.rate, duration_s=args.seconds - 1, warmup_s=0.5)
            requests = res["requests"]
        else:
            res = wrk.run(target.port, duration_s=args.seconds - 1)
            requests = res["requests"]
        cpu_us = (target.cpu_seconds() - c0) / max(1, requests) * 1e6
        _, err = spy.communicate(timeout=args.seconds + 60)
        if spy.returncode != 0:
            print(f"py-spy failed: {err.decode()[-500:]}", file=sys.stderr)
            return 1
    finally:
        for s in reversed(servers):
            s.stop()
        _stop_kafka(ctx)
    print(f"{args.scenario}: {res.get('rps') or res.get('achieved_rps'):.0f} req/s")
    print(_summarise(stacks, cpu_us, args.top))
    print(f"\nraw stacks: {stacks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
