"""The gate config: thresholds of the five gates, evidence bounds and user plugins, from YAML or TOML.

Every section has defaults, so an empty file is a valid (if lenient) config; unknown keys are
errors that name the key path, e.g. ``fairness.max_decline_ratio: Input should be greater than 1``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gates.reader import ReadOptions


class GateConfigError(ValueError):
    """The gate config is unusable; `str()` lists every problem, one per line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutputsConfig(_Strict):
    """Which model outputs hold the score and the decision."""

    score: str = "probabilities"
    score_index: int | None = Field(1, ge=0)  # column of a 2-D score output; null for 1-D
    label: str | None = "label"  # predicted class; null: label = score > decision_threshold
    decision_threshold: float = 0.5
    approve_label: int = 0  # the predicted class that means "approved" (credit: 0 = no default)


class FeaturesConfig(_Strict):
    input_columns: dict[str, list[str]] = {}  # tensor input name -> its column names
    max_rows: int = Field(1_000_000, ge=1000)  # feature rows kept for drift/schema (hash sample)


class WindowConfig(_Strict):
    start_ts: float | None = None
    end_ts: float | None = None
    labels_until_ts: float | None = None  # ignore labels that arrived later (reproducible reruns)


class EvidenceConfig(_Strict):
    min_labelled: int = Field(1000, ge=1)  # labelled rows where both models answered
    min_per_class: int = Field(20, ge=1)
    min_duration_h: float = Field(24.0, ge=0)
    max_failure_rate: float = Field(0.05, ge=0, le=1)  # shadow error + timeout share
    max_segment_failure_gap: float = Field(0.05, ge=0, le=1)  # a segment's failure rate above overall
    min_segment_records: int = Field(50, ge=1)  # smaller segments are not judged for unevenness
    min_segment_coverage: float = Field(0.5, gt=0, le=1)  # candidate share / reference share
    segment_attributes: list[str] | None = None  # default: every attribute in the log
    expected_segment_shares: dict[str, dict[str, float]] = {}  # attribute -> value -> share


class AccuracyConfig(_Strict):
    enabled: bool = True
    min_auc: float = Field(0.5, ge=0, le=1)
    min_delta: float = 0.0  # candidate AUC - champion AUC on the same rows; negative = tolerance


class LatencyConfig(_Strict):
    enabled: bool = True
    budget_ms: float = Field(100.0, gt=0)
    percentile: float = Field(95.0, gt=0, le=100)


class FairnessConfig(_Strict):
    enabled: bool = True
    attribute: str = "segment"
    max_auc_gap: float = Field(0.1, ge=0, le=1)  # |group AUC - overall AUC| of the candidate
    min_approval_ratio: float = Field(0.8, ge=0, le=1)  # candidate / champion approval rate per group
    max_decline_ratio: float = Field(1.5, ge=1)  # candidate / champion decline rate per group
    min_group_rows: int = Field(100, ge=1)
    min_group_labelled: int = Field(50, ge=1)


class DriftConfig(_Strict):
    enabled: bool = True
    max_psi: float = Field(0.2, gt=0)
    training_stats: Path | None = None  # JSON from gates.drift_stats.training_stats


class SchemaConfig(_Strict):
    enabled: bool = True
    signature: Path | None = None  # JSON of ModelSignature.to_dict()
    fail_on_extra: bool = False  # production sends columns the signature lacks


class DivergenceConfig(_Strict):
    segment_attributes: list[str] | None = None  # default: every attribute in the log
    psi_bins: int = Field(10, ge=2)
    max_segments: int = Field(50, ge=1)  # per attribute, the largest ones


class PluginConfig(_Strict):
    """A user gate: `target` "module:attr" (class or factory) or an entry point in `shadowlane.gates`."""

    name: str = Field(min_length=1)
    target: str | None = Field(None, pattern=r"^[\w.]+:[\w.]+$")
    entry_point: str | None = None
    params: dict[str, Any] = {}


class GateConfig(_Strict):
    outputs: OutputsConfig = OutputsConfig()
    features: FeaturesConfig = FeaturesConfig()
    window: WindowConfig = WindowConfig()
    evidence: EvidenceConfig = EvidenceConfig()
    accuracy: AccuracyConfig = AccuracyConfig()
    latency: LatencyConfig = LatencyConfig()
    fairness: FairnessConfig = FairnessConfig()
    drift: DriftConfig = DriftConfig()
    schema_: SchemaConfig = Field(SchemaConfig(), alias="schema")
    divergence: DivergenceConfig = DivergenceConfig()
    plugins: list[PluginConfig] = []

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def read_options(self) -> ReadOptions:
        return ReadOptions(score_output=self.outputs.score, score_index=self.outputs.score_index,
                           label_output=self.outputs.label, decision_threshold=self.outputs.decision_threshold,
                           input_columns=dict(self.features.input_columns), max_feature_rows=self.features.max_rows,
                           start_ts=self.window.start_ts, end_ts=self.window.end_ts)


def parse_config(data: dict[str, Any] | None, *, base_dir: Path | None = None) -> GateConfig:
    """Validate a config mapping; relative file paths resolve against `base_dir`."""
    try:
        cfg = GateConfig.model_validate(data or {})
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "<root>"
            lines.append(f"{loc}: {e['msg']} (got {e.get('input')!r})")
        raise GateConfigError("\n".join(lines)) from None
    if base_dir is not None:
        updates = {}
        if cfg.drift.training_stats is not None and not cfg.drift.training_stats.is_absolute():
            updates["drift"] = cfg.drift.model_copy(update={"training_stats": base_dir / cfg.drift.training_stats})
        if cfg.schema_.signature is not None and not cfg.schema_.signature.is_absolute():
            updates["schema_"] = cfg.schema_.model_copy(update={"signature": base_dir / cfg.schema_.signature})
        if updates:
            cfg = cfg.model_copy(update=updates)
    return cfg


def load_config(path: str | Path) -> GateConfig:
    """Load a `.yaml`/`.yml` or `.toml` gate config."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise GateConfigError(f"{p}: cannot read gate config: {err.strerror}") from None
    try:
        data = tomllib.loads(text) if p.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        raise GateConfigError(f"{p}: not valid {'TOML' if p.suffix == '.toml' else 'YAML'}: {err}") from None
    if data is not None and not isinstance(data, dict):
        raise GateConfigError(f"{p}: the gate config must be a mapping, got {type(data).__name__}")
    try:
        return parse_config(data, base_dir=p.parent)
    except GateConfigError as err:
        raise GateConfigError(f"{p}:\n{err}") from None
