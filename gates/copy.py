"""`shadowlane registry copy`: copy a model version to another registry with its provenance.

The copy carries the model's artifacts byte for byte (only the MLmodel file's ids are rewritten
to the destination's logged model), its signature, every version tag (gate results, training
stats, author, ...) and the registered model's ``high_stakes`` mark, plus ``provenance.*`` tags:
source URI (credentials removed), name, version, run id, model id, stage, artifact digest, when
and by whom. A copy of a copy keeps the whole chain in ``provenance.lineage``. The copy starts in
lifecycle stage None: promotion is decided per registry.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from gates.audit import AuditLog
from gates.pin import _redact
from gates.registry import EXPERIMENT, RegistryError, _experiment_id, get_version, tracking_uri, using

# Per-registry state that must not travel with a copy.
_NOT_COPIED = ("lifecycle.", "review.")


@dataclass(frozen=True)
class CopyResult:
    name: str
    version: int
    run_id: str
    model_id: str
    artifacts_sha256: str
    tags: dict[str, str]


def artifacts_digest(directory: Path) -> str:
    """sha256 over every artifact file (path and bytes) except MLmodel, whose ids differ per registry."""
    h = hashlib.sha256()
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name != "MLmodel":
            h.update(p.relative_to(directory).as_posix().encode() + b"\0")
            h.update(p.read_bytes())
            h.update(b"\0")
    return "sha256:" + h.hexdigest()


def copy_version(src: MlflowClient, dst: MlflowClient, name: str, version: int | str, *, actor: str,
                 dst_name: str | None = None, audit: AuditLog | None = None) -> CopyResult:
    """Copy `name` v`version` from `src` into `dst` (as `dst_name`, default the same name)."""
    if not actor:
        raise RegistryError("registry copy needs --actor (recorded as provenance.copied_by)")
    dst_name = dst_name or name
    mv = get_version(src, name, version)
    src_rm = src.get_registered_model(name)
    src_uri = tracking_uri(src)
    with tempfile.TemporaryDirectory(prefix="shadowlane-copy-") as tmp:
        with using(src_uri):
            local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=tmp))
        mlmodel_path = local / "MLmodel"
        if not mlmodel_path.exists():
            raise RegistryError(f"{name} v{version} has no MLmodel file; only MLflow models can be copied")
        digest = artifacts_digest(local)
        mlmodel = yaml.safe_load(mlmodel_path.read_text())

        exp_id = _experiment_id(dst, EXPERIMENT)
        run = dst.create_run(exp_id, run_name=f"copy of {name} v{version}",
                             tags={"shadowlane.copied_from": f"{_redact(src_uri)}#{name}/{version}"})
        logged = dst.create_logged_model(exp_id, name="model", source_run_id=run.info.run_id,
                                         model_type=mlmodel.get("model_type"))
        mlmodel.update(model_id=logged.model_id, model_uuid=logged.model_id, run_id=run.info.run_id,
                       artifact_path=logged.artifact_location)
        mlmodel_path.write_text(yaml.safe_dump(mlmodel, sort_keys=False))
        dst.log_model_artifacts(logged.model_id, str(local))
        dst.finalize_logged_model(logged.model_id, "READY")
        dst.set_terminated(run.info.run_id)

    prior = json.loads(mv.tags.get("provenance.lineage", "[]"))
    hop = {"uri": _redact(src_uri), "name": name, "version": int(version), "run_id": mv.run_id,
           "copied_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "copied_by": actor}
    tags = {k: v for k, v in mv.tags.items() if not k.startswith(_NOT_COPIED)}
    tags.update({
        "lifecycle.stage": "None",
        "provenance.source_uri": hop["uri"],
        "provenance.source_name": name,
        "provenance.source_version": str(version),
        "provenance.source_run_id": mv.run_id or "",
        "provenance.source_model_uri": mv.source or "",
        "provenance.source_stage": mv.tags.get("lifecycle.stage", "None"),
        "provenance.artifacts_sha256": digest,
        "provenance.copied_at": hop["copied_at"],
        "provenance.copied_by": actor,
        "provenance.lineage": json.dumps(prior + [hop], separators=(",", ":")),
    })
    try:
        dst.get_registered_model(dst_name)
    except MlflowException:
        rm_tags = {k: v for k, v in src_rm.tags.items() if not k.startswith("lifecycle.")}
        dst.create_registered_model(dst_name, tags=rm_tags, description=src_rm.description)
    else:
        if src_rm.tags.get("high_stakes"):
            dst.set_registered_model_tag(dst_name, "high_stakes", src_rm.tags["high_stakes"])
    with using(tracking_uri(dst)):  # the registry resolves models:/ sources through the fluent URI
        new = dst.create_model_version(dst_name, f"models:/{logged.model_id}", run_id=run.info.run_id,
                                       tags=tags, description=mv.description, model_id=logged.model_id)
    if audit is not None:
        audit.append("registry.copy", actor, {
            "model": dst_name, "version": int(new.version), "destination_uri": _redact(tracking_uri(dst)),
            "source": hop, "artifacts_sha256": digest})
    return CopyResult(dst_name, int(new.version), run.info.run_id, logged.model_id, digest, tags)


def verify_copy(client: MlflowClient, name: str, version: int | str) -> bool:
    """True if the version's artifacts still hash to its ``provenance.artifacts_sha256``."""
    mv = get_version(client, name, version)
    want = mv.tags.get("provenance.artifacts_sha256")
    if not want:
        raise RegistryError(f"{name} v{version} is not a copy (no provenance.artifacts_sha256 tag)")
    with tempfile.TemporaryDirectory(prefix="shadowlane-verify-") as tmp, using(tracking_uri(client)):
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=tmp))
        return artifacts_digest(local) == want


__all__ = ["CopyResult", "artifacts_digest", "copy_version", "verify_copy"]
