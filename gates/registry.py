"""MLflow Model Registry access: register ONNX candidates, record gate results as version tags.

Works against any tracking URI (default: a local sqlite file). Everything shadowlane keeps on a
model version is a tag, so it travels with `shadowlane registry copy`:

- ``author``, ``high_stakes`` — who registered it; whether promotion needs two reviewers
- ``training_stats`` — per-feature histogram of the training data (for the drift gate)
- ``gate.verdict``, ``gate.<name>.passed``, ``gate.<name>.reason``, ``gate.<name>.values``,
  ``gate.evaluation_sha256``, ``gate.data_version`` — the last gate run; the full evaluation JSON
  is an artifact of the version's run (``gate.evaluation_uri``)
- ``metric.<gate>.<name>`` — the candidate's figures in the last gate run (``metric.accuracy.auc``)
- ``lifecycle.*``, ``review.*`` — see `gates.lifecycle` and `gates.review`
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from typing import Any, Iterator

import mlflow
import numpy as np
import onnx
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
EXPERIMENT = "shadowlane"
MAX_KEY = 250  # MLflow registry tag key limit
MAX_REASON = 500  # characters kept of a gate's reason in its tag
MAX_VALUES = 2000  # characters of a gate's values JSON kept in its tag
MAX_INLINE_STATS = 64_000  # training stats larger than this live only as an artifact

_TRUE = ("true", "1", "yes")


class RegistryError(RuntimeError):
    """A registry operation was refused or failed; the message says which model/version and why."""


def connect(uri: str | None = None) -> MlflowClient:
    """A client whose tracking and registry stores are both `uri` (default: ./mlflow.db)."""
    uri = uri or DEFAULT_TRACKING_URI
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextlib.contextmanager
def using(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (log_model, artifacts) at `uri` for the duration of the block."""
    old_t, old_r = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old_t)
        mlflow.set_registry_uri(old_r)


def tracking_uri(client: MlflowClient) -> str:
    return client._tracking_client.tracking_uri  # public accessor does not exist in 3.x


def is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


def get_version(client: MlflowClient, name: str, version: int | str) -> ModelVersion:
    """The model version, or RegistryError naming what does not exist."""
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as err:
        raise RegistryError(f"model {name!r} version {version} not found in the registry: "
                            f"{err.message}") from None


def onnx_signature(model: onnx.ModelProto, feature_names: list[str] | tuple[str, ...] | None = None) -> ModelSignature:
    """The MLflow signature of an ONNX model.

    With `feature_names` and a single 2-D float input of matching width the inputs become named
    columns (what the schema gate compares against the features production sends); otherwise
    one tensor spec per graph input.
    """
    inputs = list(model.graph.input)
    init_names = {i.name for i in model.graph.initializer}
    inputs = [i for i in inputs if i.name not in init_names]

    def tensor(vi: onnx.ValueInfoProto) -> TensorSpec:
        tt = vi.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
        return TensorSpec(np.dtype(dtype), shape, vi.name)

    outputs = Schema([tensor(o) for o in model.graph.output])
    if feature_names is not None:
        if len(inputs) != 1:
            raise RegistryError(f"feature_names given but the model has {len(inputs)} inputs")
        spec = tensor(inputs[0])
        if len(spec.shape) != 2 or spec.shape[1] != len(feature_names):
            raise RegistryError(f"feature_names has {len(feature_names)} names but input "
                                f"{inputs[0].name!r} has shape {spec.shape}")
        kind = {np.dtype("float32"): "float", np.dtype("float64"): "double",
                np.dtype("int64"): "long", np.dtype("int32"): "integer"}.get(spec.type)
        if kind is None:
            raise RegistryError(f"input dtype {spec.type} cannot be described as named columns")
        return ModelSignature(inputs=Schema([ColSpec(kind, n) for n in feature_names]), outputs=outputs)
    return ModelSignature(inputs=Schema([tensor(i) for i in inputs]), outputs=outputs)


def _experiment_id(client: MlflowClient, name: str = EXPERIMENT) -> str:
    exp = client.get_experiment_by_name(name)
    return exp.experiment_id if exp else client.create_experiment(name)


def register_onnx(client: MlflowClient, name: str, model: onnx.ModelProto, *, author: str,
                  feature_names: list[str] | tuple[str, ...] | None = None,
                  signature: ModelSignature | None = None,
                  training_stats: dict[str, Any] | None = None,
                  high_stakes: bool = False, description: str | None = None,
                  tags: dict[str, str] | None = None) -> ModelVersion:
    """Log an ONNX model with its signature into a new run and register it as the next version.

    The version starts in lifecycle stage ``None`` with ``author`` recorded (the author may not
    approve it). `high_stakes` marks the registered model, so every version needs two reviewers.
    """
    if not author:
        raise RegistryError("register needs an author")
    sig = signature or onnx_signature(model, feature_names)
    with using(tracking_uri(client)):
        with mlflow.start_run(experiment_id=_experiment_id(client), run_name=f"register {name}") as run:
            info = mlflow.onnx.log_model(model, name="model", signature=sig, registered_model_name=name,
                                         pip_requirements=["onnxruntime"])
            if training_stats is not None:
                mlflow.log_dict(training_stats, "training_stats.json")
            mlflow.set_tag("shadowlane.author", author)
    version = str(info.registered_model_version)
    vtags = {"author": author, "lifecycle.stage": "None",
             "model_sha256": hashlib.sha256(model.SerializeToString()).hexdigest()}
    if training_stats is not None:
        text = json.dumps(training_stats, separators=(",", ":"))
        vtags["training_stats.uri"] = f"runs:/{run.info.run_id}/training_stats.json"
        if len(text) <= MAX_INLINE_STATS:
            vtags["training_stats"] = text
    vtags.update(tags or {})
    for k, v in vtags.items():
        client.set_model_version_tag(name, version, k, v)
    if high_stakes:
        client.set_registered_model_tag(name, "high_stakes", "true")
    if description:
        client.update_model_version(name, version, description=description)
    return get_version(client, name, version)


def load_training_stats(client: MlflowClient, name: str, version: int | str) -> dict[str, Any] | None:
    """The training statistics stored with a version (tag, else the run artifact), or None."""
    mv = get_version(client, name, version)
    if "training_stats" in mv.tags:
        return json.loads(mv.tags["training_stats"])
    uri = mv.tags.get("training_stats.uri")
    if not uri:
        return None
    with using(tracking_uri(client)):
        return mlflow.artifacts.load_dict(uri)


def load_signature(client: MlflowClient, name: str, version: int | str) -> ModelSignature | None:
    """The signature logged with a version's model."""
    with using(tracking_uri(client)):
        return mlflow.models.get_model_info(f"models:/{name}/{version}").signature


def is_high_stakes(client: MlflowClient, name: str, version: int | str) -> bool:
    """High stakes if the registered model or this version carries ``high_stakes=true``."""
    mv = get_version(client, name, version)
    rm = client.get_registered_model(name)
    return is_true(rm.tags.get("high_stakes")) or is_true(mv.tags.get("high_stakes"))


def version_for_alias(client: MlflowClient, name: str, alias: str) -> int | None:
    """The version number an alias points at, or None if the alias is not set."""
    try:
        rm = client.get_registered_model(name)
    except MlflowException as err:
        raise RegistryError(f"registered model {name!r} not found: {err.message}") from None
    v = rm.aliases.get(alias)
    return int(v) if v is not None else None


# ---------------------------------------------------------------- gate results


def _tag_key(*parts: str) -> str:
    key = ".".join(re.sub(r"[^A-Za-z0-9_\-./ ]", "_", p) for p in parts)
    if len(key) > MAX_KEY:
        raise RegistryError(f"tag key {key[:40]!r}… is longer than {MAX_KEY} characters")
    return key


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def normalize_gates(evaluation: dict[str, Any], *, evidence: bool = True) -> list[dict[str, Any]]:
    """The gate (and evidence-check) results of an evaluation as ``[{name, passed, reason, values}]``.

    Reads `gates.evaluate.Evaluation.to_dict()`: ``gates`` and ``evidence`` are lists of objects
    with ``name`` (a mapping name -> result is accepted too); ``passed`` is True, False, or None
    for "insufficient evidence" (also read from ``status``).
    """
    raw = evaluation.get("gates")
    if raw is None:
        raise RegistryError("evaluation has no 'gates'")
    items = list(raw.items() if isinstance(raw, dict) else ((g.get("name"), g) for g in raw))
    if evidence:
        ev = evaluation.get("evidence") or []
        items += list(ev.items() if isinstance(ev, dict) else ((g.get("name"), g) for g in ev))
    out = []
    for name, g in items:
        if not name:
            raise RegistryError(f"a gate result has no name: {g!r}")
        passed = g.get("passed")
        status = str(g.get("status", "")).lower()
        if status in ("insufficient", "insufficient_evidence"):
            passed = None
        out.append({"name": str(name), "passed": passed, "reason": str(g.get("reason", "")),
                    "values": g.get("values", {})})
    return out


def verdict_of(evaluation: dict[str, Any]) -> str:
    """``pass``, ``fail`` or ``insufficient_evidence`` (the evaluation's own, else derived).

    A stated ``pass`` must agree with the results: an evaluation JSON (e.g. `registry record-gate
    --evaluation`) that says pass while a gate or evidence check did not pass is refused.
    """
    v = evaluation.get("verdict")
    if isinstance(v, str):
        v = v.lower().replace(" ", "_")
        if v in ("pass", "passed"):
            not_passed = [g["name"] for g in normalize_gates(evaluation) if g["passed"] is not True]
            if not_passed:
                raise RegistryError(f"evaluation says pass but {', '.join(not_passed)} did not pass")
            return "pass"
        if v in ("fail", "failed"):
            return "fail"
        if "insufficient" in v:
            return "insufficient_evidence"
        raise RegistryError(f"unknown verdict {evaluation['verdict']!r}")
    gates = normalize_gates(evaluation)
    if any(g["passed"] is False for g in gates if g["name"].startswith("evidence.")):
        return "insufficient_evidence"
    if any(g["passed"] is False for g in gates):
        return "fail"
    if any(g["passed"] is None for g in gates):
        return "insufficient_evidence"
    return "pass"


def evaluation_sha256(evaluation: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(evaluation, sort_keys=True, separators=(",", ":"),
                                     default=str).encode()).hexdigest()


def headline_metrics(evaluation: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """(candidate, champion) scalar metrics found in the gates' values, e.g. ``accuracy.auc``.

    A numeric value whose key names the candidate (``auc_candidate``, ``candidate_ms``) is the
    candidate's, one naming the champion is the production model's on the same traffic.
    """
    cand: dict[str, float] = {}
    champ: dict[str, float] = {}
    for g in normalize_gates(evaluation, evidence=False):
        for key, v in (g["values"] or {}).items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v:
                continue
            for side, out in (("candidate", cand), ("champion", champ)):
                if side in key:
                    short = key.replace(f"_{side}", "").replace(f"{side}_", "").replace(side, "") or "value"
                    out[f"{g['name']}.{short}"] = float(v)
    return cand, champ


def _summary_version(evaluation: dict[str, Any]) -> str | None:
    """A stand-in data version when the caller has none: a hash of what the evaluation read."""
    s = evaluation.get("summary")
    if not isinstance(s, dict):
        return None
    keys = ("lines_read", "records", "labels_read", "first_ts", "last_ts", "candidate_records")
    blob = json.dumps({k: s.get(k) for k in keys}, sort_keys=True)
    return "summary-sha256:" + hashlib.sha256(blob.encode()).hexdigest()[:32]


def record_gate_results(client: MlflowClient, name: str, version: int | str,
                        evaluation: dict[str, Any], *, audit: Any = None, actor: str = "shadowlane-gate",
                        data_version: str | None = None) -> dict[str, Any]:
    """Write an evaluation onto the model version as tags, its JSON as an artifact, and audit it.

    Tags are kept small (reasons truncated to 500 chars, values to 2 kB); the whole evaluation is
    logged to the version's run as ``gates/evaluation-<ts>.json`` (``gate.evaluation_uri``).
    Returns the tags written. Stale ``gate.<name>.*`` tags from an earlier run are removed.
    """
    mv = get_version(client, name, version)
    gates = normalize_gates(evaluation)
    verdict = verdict_of(evaluation)
    digest = evaluation_sha256(evaluation)
    if data_version is None:
        data = evaluation.get("data")
        data_version = evaluation.get("data_version") or (data.get("version") if isinstance(data, dict) else None) \
            or _summary_version(evaluation)
    tags: dict[str, str] = {
        "gate.verdict": verdict,
        "gate.evaluated_at": f"{time.time():.3f}",
        "gate.evaluation_sha256": digest,
        "gate.names": ",".join(g["name"] for g in gates),
    }
    if data_version:
        tags["gate.data_version"] = str(data_version)
    for g in gates:
        state = {True: "true", False: "false", None: "insufficient"}[g["passed"]]
        tags[_tag_key("gate", g["name"], "passed")] = state
        tags[_tag_key("gate", g["name"], "reason")] = _truncate(g["reason"], MAX_REASON)
        tags[_tag_key("gate", g["name"], "values")] = _truncate(
            json.dumps(g["values"], separators=(",", ":"), default=str), MAX_VALUES)
    cand_metrics, champ_metrics = headline_metrics(evaluation)
    for k, v in cand_metrics.items():
        tags[_tag_key("metric", k)] = repr(v)
    run_id = mv.run_id or client.create_run(_experiment_id(client), run_name=f"gates {name} v{version}").info.run_id
    artifact = f"gates/evaluation-{int(time.time() * 1000)}.json"
    client.log_text(run_id, json.dumps(evaluation, indent=1, default=str), artifact)
    tags["gate.evaluation_uri"] = f"runs:/{run_id}/{artifact}"

    for old in [k for k in mv.tags if k.startswith("gate.") and k not in tags]:
        client.delete_model_version_tag(name, str(version), old)
    for k, v in tags.items():
        client.set_model_version_tag(name, str(version), k, v)

    if audit is not None:
        production = production_snapshot(client, name)
        audit.append("gate.run", actor, {
            "model": name, "version": int(version), "verdict": verdict,
            "gates": {g["name"]: {"passed": g["passed"], "reason": _truncate(g["reason"], MAX_REASON)}
                      for g in gates},
            "evaluation_sha256": digest, "evaluation_uri": tags["gate.evaluation_uri"],
            "data_version": data_version,
            "candidate_metrics": cand_metrics,
            "production": production,
            "champion_metrics_same_traffic": champ_metrics,
        })
    return tags


def production_snapshot(client: MlflowClient, name: str) -> dict[str, Any] | None:
    """The current Production version and its recorded metrics (``metric.*`` tags), for audit records."""
    try:
        v = client.get_registered_model(name).aliases.get("production")
    except MlflowException:
        return None
    if v is None:
        return None
    mv = client.get_model_version(name, str(v))
    return {"version": int(v),
            "metrics": {k.removeprefix("metric."): float(t) for k, t in mv.tags.items() if k.startswith("metric.")},
            "gate_verdict": mv.tags.get("gate.verdict")}
