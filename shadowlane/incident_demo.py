"""`shadowlane demo --scenario incident`: the incident this project exists to prevent, end to end.

A credit-risk candidate (v2) ranks better than the serving champion (v1) — higher AUC — but
declines small-business applicants about three times as often. Here it does not go live by copying
a file: it is registered in a local MLflow registry, shadowed behind the champion by the real
proxy (`shadowlane serve`), gated over the shadow log and the late-arriving outcomes, and blocked
at the fairness gate. The audit log and the HTML report say why; the champion keeps serving.

Everything runs on the embedded default (sqlite MLflow, file shadow log, loopback HTTP).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from shadowlane.demo_models import CREDIT_FEATURES, credit_model, save

MODEL = "credit-risk"
SMALL_BUSINESS = CREDIT_FEATURES.index("small_business")
HISTORY_DAYS = 30  # v1 was gated and promoted this long ago (its own shadow period, replayed)


class _Clock:
    """Real time, except while replaying last month's promotion of the champion."""

    def __init__(self) -> None:
        self.fixed: float | None = None

    def __call__(self) -> float:
        return self.fixed if self.fixed is not None else time.time()


def _models() -> dict[str, Any]:
    """Legacy v0 (pre-registry), champion v1, candidate v2 — all real ONNX logistic regressions.

    Outcomes come from the demo's reference weights (`gates.synthetic`); noise on a model's weights
    makes it rank worse. v2 is close to the truth (better AUC) but weighs `small_business` heavily.
    """
    def shifted(seed: int, noise: float, small_business: float) -> Any:
        shift = np.random.default_rng(seed).normal(0, noise, len(CREDIT_FEATURES)).astype(np.float32)
        shift[SMALL_BUSINESS] = small_business
        return credit_model(weight_shift=shift)

    return {"v0": shifted(5, 1.0, 0.0), "v1": shifted(2, 0.6, 0.0), "v2": shifted(3, 0.05, 0.8)}


def _step(n: int, text: str) -> None:
    print(f"\n[{n}] {text}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="shadowlane demo --scenario incident", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default="shadowlane-demo", help="working directory (emptied of earlier incident runs)")
    p.add_argument("--requests", type=int, default=3000, help="requests sent through the proxy")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seed", type=int, default=2026)
    args = p.parse_args(argv)
    if args.requests < 1500:
        p.error("--requests must be at least 1500 (the gates need 1000 labelled rows and 100 per segment)")

    from gates import synthetic as syn
    from gates.audit import AuditLog
    from gates.cli import quiet_mlflow
    from gates.drift_stats import training_stats
    from gates.evaluate import evaluate
    from gates.lifecycle import Lifecycle, PromotionError
    from gates.pin import pin_file
    from gates.registry import connect, load_signature, load_training_stats, record_gate_results, register_onnx
    from gates.report import html_report, text_table
    from gates.review import CHECKLIST
    from shadowlane.segments import SegmentWriter

    quiet_mlflow()

    root = Path(args.dir).resolve() / "incident"
    if root.exists():
        shutil.rmtree(root)  # each run tells the story from the start
    root.mkdir(parents=True)
    rng = np.random.default_rng(args.seed)
    clock = _Clock()
    audit = AuditLog(root / "audit.jsonl", clock=clock)
    uri = f"sqlite:///{root}/mlflow.db"
    client = connect(uri)
    client.create_experiment("shadowlane", artifact_location=(root / "mlartifacts").as_uri())
    lifecycle = Lifecycle(client, audit)
    models = _models()
    for key in ("v1", "v2"):
        save(models[key], root / "models" / f"{MODEL}-{key}.onnx")

    # -------------------------------------------------------------- 1. registry
    _step(1, f"register champion v1 and candidate v2 in MLflow ({uri})")
    train = syn.traffic(20_000, np.random.default_rng(args.seed + 1)).X
    stats = training_stats(train, CREDIT_FEATURES)
    for key, author in (("v1", "dana"), ("v2", "sam")):
        mv = register_onnx(client, MODEL, models[key], author=author, feature_names=CREDIT_FEATURES,
                           training_stats=stats, description=f"credit-risk logistic regression {key}")
        audit.append("register", author, {"model": MODEL, "version": int(mv.version), "source": mv.source,
                                          "model_sha256": mv.tags["model_sha256"]})
        print(f"    {MODEL} v{mv.version}  author={author}  signature: 10 named float columns; training stats stored")

    # -------------------------------------------------------------- 2. last month: v1 earned Production
    _step(2, f"{HISTORY_DAYS} days ago: v1 shadowed legacy v0, passed the gates and two humans let it through")
    t_hist = time.time() - HISTORY_DAYS * 86400
    hist = syn.traffic(4000, rng, start_ts=t_hist - 26 * 3600, hours=26, prefix="hist")
    hist_dir = root / "history" / "shadowlog"
    w = SegmentWriter(hist_dir)
    w.write_many(syn.shadow_records(hist, models["v0"], models["v1"], rng=rng, champion_id=("credit-risk-legacy", 0),
                                    candidate_id=(MODEL, 1)))
    w.close()
    (root / "history" / "labels.jsonl").write_bytes(b"\n".join(syn.label_lines(hist)) + b"\n")
    ev1 = evaluate(hist_dir, candidate=(MODEL, 1), labels=root / "history" / "labels.jsonl",
                   signature=load_signature(client, MODEL, 1), training_stats=load_training_stats(client, MODEL, 1))
    clock.fixed = t_hist
    record_gate_results(client, MODEL, 1, ev1.to_dict(), audit=audit, actor="ci", data_version=ev1.data_version)
    if ev1.verdict != "pass":
        print(text_table(ev1))
        print("demo setup failed: v1 should pass its historical gate run", file=sys.stderr)
        return 1
    lifecycle.promote(MODEL, 1, "staging", "dana")
    lifecycle.reviews.request(MODEL, 1, "dana", note="replaces the legacy scorecard")
    clock.fixed = t_hist + 3 * 3600
    lifecycle.reviews.approve(MODEL, 1, "priya", {k: "yes" for k in CHECKLIST}, note="per-segment results fine")
    lifecycle.promote(MODEL, 1, "production", "dana")
    clock.fixed = None
    auc1 = ev1.gate("accuracy").values["auc_candidate"]
    print(f"    v1: gates pass (AUC {auc1:.3f}); reviewed by priya; Production (alias production -> 1)")

    # -------------------------------------------------------------- 3. shadow v2 through the proxy
    _step(3, "today: v2 shadows v1 through the real proxy (`shadowlane serve`, 100% mirrored)")
    deploy = {
        "server": {"host": "127.0.0.1", "port": 0, "attribute_headers": {"segment": "x-segment"}},
        "shadow": {"record_features": True},
        "sink": {"type": "file", "directory": "shadowlog", "flush_interval_ms": 20},
        "models": {
            "champion": {"name": MODEL, "version": "@production", "feature_names": list(CREDIT_FEATURES),
                         "backend": {"type": "onnx", "path": f"models/{MODEL}-v1.onnx"}},
            "candidate": {"name": MODEL, "version": 2, "feature_names": list(CREDIT_FEATURES),
                          "backend": {"type": "onnx", "path": f"models/{MODEL}-v2.onnx"}},
        },
        "endpoints": {"credit": {"champion": "champion",
                                 "shadows": [{"model": "candidate", "fraction": 1.0, "timeout_ms": 1000}]}},
    }
    from shadowlane.demo import _free_port

    port = _free_port()
    deploy["server"]["port"] = port
    (root / "deploy.yaml").write_text(yaml.safe_dump(deploy, sort_keys=False))
    _, cfg, pins = pin_file(root / "deploy.yaml", client, registry_uri=uri, out=root / "pinned.yaml")
    print(f"    shadowlane pin: champion {MODEL}@production -> v{pins[0].version}; wrote pinned.yaml")
    live = syn.traffic(args.requests, rng, start_ts=time.time(), hours=0.0, prefix="app")
    served, wrong = _serve_and_send(root, port, live, args.concurrency)
    if served != args.requests:
        print(f"demo failed: {args.requests - served} requests were not answered (see {root / 'server.log'})",
              file=sys.stderr)
        return 1
    print(f"    {served} applications answered by the champion"
          + (f" ({wrong} by another version!)" if wrong else " (every answer from v1)"))
    # Outcomes arrive later (here: all at once, as if months of repayments had been observed).
    labels = root / "labels.jsonl"
    labels.write_bytes(b"\n".join(syn.label_lines(live)) + b"\n")

    # -------------------------------------------------------------- 4. gate v2
    _step(4, "gate v2 over the shadow log and the outcomes")
    gate_cfg = {
        # The demo compresses the shadow period into seconds; a real deployment keeps the 24 h minimum.
        "evidence": {"min_duration_h": 0},
        "accuracy": {"min_auc": 0.7, "min_delta": 0.0},
        "fairness": {"attribute": "segment", "max_decline_ratio": 1.5},
    }
    (root / "gates.yaml").write_text("# demo gate config: see docs/promotion.md\n" + yaml.safe_dump(gate_cfg))
    ev2 = evaluate(root / "shadowlog", candidate=(MODEL, 2), config=gate_cfg, labels=labels,
                   signature=load_signature(client, MODEL, 2), training_stats=load_training_stats(client, MODEL, 2))
    record_gate_results(client, MODEL, 2, ev2.to_dict(), audit=audit, actor="ci", data_version=ev2.data_version)
    (root / "evaluation.json").write_text(ev2.to_json())
    (root / "report.html").write_text(html_report(ev2))
    print(text_table(ev2))

    # -------------------------------------------------------------- 5. the promotion attempt
    _step(5, "sam tries to promote v2")
    blocked_by = None
    try:
        lifecycle.promote(MODEL, 2, "staging", "sam")
    except PromotionError as err:
        blocked_by = str(err)
        print(f"    {err}")
    try:
        lifecycle.promote(MODEL, 2, "production", "sam")
    except PromotionError as err:
        print(f"    {err}")

    # -------------------------------------------------------------- 6. what is serving
    _step(6, "the champion keeps serving")
    _, _, pins = pin_file(root / "deploy.yaml", client, registry_uri=uri)
    aliases = client.get_registered_model(MODEL).aliases
    check = audit.verify()
    print(f"    registry aliases: {aliases}; pin resolves @production -> v{pins[0].version}")
    print(f"    audit log: {check.records} records, chain {'intact' if check.ok else 'BROKEN'}")

    acc, fair = ev2.gate("accuracy"), ev2.gate("fairness")
    sb = fair.values.get("groups", {}).get("small_business", {})
    print("\nWhat happened")
    print(f"  v2 AUC {acc.values['auc_candidate']:.3f} vs champion {acc.values['auc_champion']:.3f} "
          f"— better on paper, accuracy gate {'passed' if acc.passed else 'failed'}")
    print(f"  fairness gate {'passed' if fair.passed else 'FAILED'}: {fair.reason}")
    if sb:
        print(f"  small_business group: {json.dumps({k: v for k, v in sb.items() if isinstance(v, (int, float))})}")
    print("\nWhere everything is")
    for label, path in (("shadow log", root / "shadowlog"), ("labels", labels), ("gate report (HTML)", root / "report.html"),
                        ("evaluation JSON", root / "evaluation.json"), ("audit log", root / "audit.jsonl"),
                        ("MLflow registry", root / "mlflow.db"), ("deployment (pinned)", root / "pinned.yaml"),
                        ("proxy log", root / "server.log")):
        print(f"  {label:<20} {path}")
    print(f"\n  shadowlane audit show --log {root / 'audit.jsonl'}")
    print(f"  shadowlane registry show --model {MODEL} --version 2 --registry-uri {uri}")

    ok = (ev2.verdict == "fail" and not fair.passed and acc.passed and blocked_by is not None
          and aliases.get("production") == 1 and check.ok and not wrong)
    if not ok:
        print("\ndemo did not tell the expected story (see above)", file=sys.stderr)
    return 0 if ok else 1


def _serve_and_send(root: Path, port: int, live: Any, concurrency: int) -> tuple[int, int]:
    """Run `shadowlane serve` on the pinned config, send every application, stop it gracefully."""
    from shadowlane.demo import running_proxy

    with running_proxy(root / "pinned.yaml", port, root / "server.log", cwd=root) as url:
        return asyncio.run(_send(url, live, concurrency))


async def _send(url: str, live: Any, concurrency: int) -> tuple[int, int]:
    import httpx

    served = wrong = 0
    it = iter(range(len(live.request_ids)))

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal served, wrong
        for i in it:
            body = {"inputs": [{"name": "features", "shape": [1, 10], "datatype": "FP32",
                                "data": live.X[i].tolist()}]}
            r = await http.post("/v2/models/credit/infer", json=body, headers={
                "x-request-id": live.request_ids[i], "x-user-id": f"applicant-{i}",
                "x-segment": str(live.segment[i])})
            if r.status_code == 200:
                served += 1
                if str(r.json().get("model_version")) != "1":
                    wrong += 1

    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return served, wrong
