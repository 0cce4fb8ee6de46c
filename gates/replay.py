"""`shadowlane replay`: run a candidate (an ONNX file or an upstream OIP/MLflow server) over requests
recorded in a shadow log (with features kept) and write shadow records as if it had shadowed them
live, so it can be gated before any exposure.

Each logged request is replayed once (the first record of each request id); the champion side
is copied from the log, the shadow side is the candidate, timed per request on this machine.
The records go to segment files (`shadowlane.segments.SegmentWriter`) that `shadowlane gate` reads.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import orjson
from xxhash import xxh3_64_intdigest

from gates.reader import open_source
from proxy.backends import BackendError, build_backend
from proxy.backends.base import Backend
from proxy.config import ModelConfig
from proxy.tensors import TensorSpec
from shadowlane.record import encode
from shadowlane.segments import SegmentWriter


@dataclass
class ReplayStats:
    requests: int = 0
    written: int = 0
    no_features: int = 0
    failed: int = 0
    duplicates: int = 0

    def __str__(self) -> str:
        return (f"replayed {self.written} requests ({self.failed} failed), skipped {self.no_features} without "
                f"features and {self.duplicates} repeated request ids")


class FeedBuilder:
    """Rebuilds model feeds from a record's `features`: tensor inputs by name, or named columns
    stacked into the model's single 2-D input in `feature_names` order."""

    def __init__(self, backend: Backend, feature_names: list[str] | None, *, default_input: str = "features"):
        # An upstream without metadata (MLflow scoring) gets one float32 input named `default_input`.
        self.inputs = {t.name: t for t in backend.inputs} or {default_input: TensorSpec(default_input, "FP32", (-1, -1))}
        self.feature_names = feature_names

    def __call__(self, features: dict[str, Any], rows: int) -> dict[str, np.ndarray]:
        if set(self.inputs) <= set(features):
            return {name: np.asarray(features[name], dtype=spec.dtype) for name, spec in self.inputs.items()}
        if len(self.inputs) != 1:
            raise ValueError(f"record features {sorted(features)} do not name the model inputs {sorted(self.inputs)}")
        (name, spec), = self.inputs.items()
        names = self.feature_names or list(features)
        missing = [n for n in names if n not in features]
        if missing:
            raise ValueError(f"record lacks feature column(s) {missing}")
        x = np.empty((rows, len(names)), dtype=spec.dtype)
        for j, n in enumerate(names):
            x[:, j] = features[n]
        return {name: x}


def replay(lines: Iterable[bytes], backend: Backend, writer: SegmentWriter, *, name: str, version: int,
           feature_names: list[str] | None = None, variant: str = "replay", batch: int = 256,
           run: Callable[[dict[str, np.ndarray]], Any] | None = None) -> ReplayStats:
    """Run `backend` on every distinct logged request with features; write one record each.

    `run(feeds) -> outputs` defaults to `backend.predict` (in-process backends); pass a wrapper
    around `backend.infer` for remote ones (see `main`).
    """
    stats = ReplayStats()
    run = run or backend.predict
    feeds_of = FeedBuilder(backend, feature_names)
    seen: set[int] = set()
    out: list[bytes] = []
    for line in lines:
        rec = orjson.loads(line)
        stats.requests += 1
        key = xxh3_64_intdigest(rec["request_id"].encode())
        if key in seen:
            stats.duplicates += 1
            continue
        seen.add(key)
        features = rec.get("features")
        if not features:
            stats.no_features += 1
            continue
        side: dict[str, Any] = {"model": name, "version": version, "variant": variant}
        try:
            feeds = feeds_of(features, int(rec["rows"]))
            t0 = time.perf_counter()
            outputs = run(feeds)
            side.update(status="ok", latency_ms=(time.perf_counter() - t0) * 1000,
                        outputs={k: np.asarray(v) for k, v in outputs.items()}, error=None)
        except (BackendError, ValueError, TypeError) as err:
            stats.failed += 1
            side.update(status="error", latency_ms=0.0, outputs=None, error=str(err))
        rec["shadow"] = side
        out.append(encode(rec))
        stats.written += 1
        if len(out) >= batch:
            writer.write_many(out)
            out.clear()
    if out:
        writer.write_many(out)
    return stats


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shadowlane replay", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--log", required=True, help="shadow log: segment directory, JSONL file or kafka:// URI")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--candidate", help="candidate ONNX model file")
    which.add_argument("--upstream", help="candidate served upstream: base URL of an OIP or MLflow server")
    p.add_argument("--protocol", choices=["oip", "mlflow"], default="oip", help="upstream protocol (default oip)")
    p.add_argument("--remote-model", help="OIP model name upstream (default: --name)")
    p.add_argument("--timeout-ms", type=float, default=5000, help="upstream call timeout")
    p.add_argument("--name", required=True, help="candidate registry name (written into the records)")
    p.add_argument("--version", required=True, type=int, help="candidate registry version")
    p.add_argument("--out", required=True, help="directory for the replayed shadow records")
    p.add_argument("--feature-names", help="comma-separated column order of the model's 2-D input "
                   "(default: the order the log recorded them in)")
    p.add_argument("--include-open", action="store_true", help="also read the segment being written")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    names = [n.strip() for n in args.feature_names.split(",")] if args.feature_names else None
    if args.candidate:
        backend_cfg: dict[str, Any] = {"type": "onnx", "path": Path(args.candidate)}
    else:
        backend_cfg = {"type": "http", "url": args.upstream, "protocol": args.protocol,
                       "remote_model": args.remote_model, "timeout_ms": args.timeout_ms}
    loop = asyncio.new_event_loop()
    try:
        cfg = ModelConfig.model_validate({"name": args.name, "version": args.version, "feature_names": names,
                                          "backend": backend_cfg})
        backend = build_backend(cfg)
        loop.run_until_complete(backend.start())
        run = None if backend.sync else (lambda feeds: loop.run_until_complete(backend.infer(feeds)))
        writer = SegmentWriter(args.out, prefix="replay")
        try:
            stats = replay(open_source(args.log, include_open=args.include_open, progress=sys.stderr.isatty()),
                           backend, writer, name=args.name, version=args.version, feature_names=names, run=run)
        finally:
            writer.close()
            loop.run_until_complete(backend.close())
    except (BackendError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        loop.close()
    print(f"{stats}; records in {args.out}")
    return 0 if stats.written else 1
