"""What a gate is: a callable over a `GateContext` returning a `GateResult`; plus plugin loading.

A user gate is any object with a `name` and `evaluate(ctx) -> GateResult` (the `Gate` protocol),
registered in the gate config either by import path (`target: "mypkg.gates:MaxDeclines"`) or by an
entry point in the `shadowlane.gates` group; `params` from the config are passed as keywords.
"""

from __future__ import annotations

import math
import pkgutil
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import numpy as np

from gates.gate_config import GateConfig, PluginConfig
from gates.metrics import roc_auc
from gates.reader import CANDIDATE, NOISE, ShadowFrame

ENTRY_POINT_GROUP = "shadowlane.gates"


@dataclass
class GateResult:
    """One gate's decision. `values` holds the figures behind it (JSON-serialisable)."""

    name: str
    passed: bool
    reason: str
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "reason": self.reason, "values": jsonable(self.values)}


@dataclass
class GateContext:
    """The evidence every gate reads: the frame (with labels attached) and the inputs of the candidate."""

    frame: ShadowFrame
    config: GateConfig
    signature: dict[str, Any] | None = None  # ModelSignature.to_dict() of the candidate
    training_stats: dict[str, Any] | None = None  # gates.drift_stats.training_stats() of the candidate
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @cached_property
    def candidate_records(self) -> np.ndarray:
        return self.frame.records.kind == CANDIDATE

    @cached_property
    def candidate_rows(self) -> np.ndarray:
        """Rows of candidate records where both models answered."""
        r = self.frame.rows
        kind = self.frame.records.kind[r.record]
        return (kind == CANDIDATE) & ~np.isnan(r.champion_score) & ~np.isnan(r.shadow_score)

    @cached_property
    def noise_rows(self) -> np.ndarray:
        r = self.frame.rows
        kind = self.frame.records.kind[r.record]
        return (kind == NOISE) & ~np.isnan(r.champion_score) & ~np.isnan(r.shadow_score)

    @cached_property
    def labelled_rows(self) -> np.ndarray:
        """Candidate rows with both answers and a ground-truth label."""
        lab = self.frame.rows.label
        if lab is None:
            return np.zeros(len(self.frame.rows), dtype=bool)
        return self.candidate_rows & (lab >= 0)

    def overall_auc(self, side: str) -> float:
        """AUC of "shadow" or "champion" scores on the labelled rows (computed once, shared by gates)."""
        key = f"auc.{side}"
        if key not in self._memo:
            m = self.labelled_rows
            scores = self.frame.rows.shadow_score if side == "shadow" else self.frame.rows.champion_score
            self._memo[key] = roc_auc(self.frame.rows.label[m], scores[m])
        return self._memo[key]

    def row_attribute(self, name: str) -> tuple[np.ndarray, list[str]] | None:
        """Per-row codes and categories of a record attribute, or None if the log has no such attribute."""
        cat = self.frame.records.attributes.get(name)
        if cat is None:
            return None
        return cat.codes[self.frame.rows.record], cat.categories


@runtime_checkable
class Gate(Protocol):
    """A promotion gate. Built-ins and plugins alike."""

    name: str

    def evaluate(self, ctx: GateContext) -> GateResult: ...


def load_plugin(spec: PluginConfig) -> Gate:
    """Instantiate a user gate from its config entry; errors name the plugin and what failed."""
    if (spec.target is None) == (spec.entry_point is None):
        raise ValueError(f"plugin {spec.name!r}: give exactly one of target (module:attr) or entry_point")
    if spec.target is not None:
        try:
            obj: Any = pkgutil.resolve_name(spec.target)
        except (ImportError, AttributeError, ValueError) as err:
            raise ValueError(f"plugin {spec.name!r}: cannot import {spec.target!r}: {err}") from err
    else:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec.entry_point]
        if not found:
            raise ValueError(f"plugin {spec.name!r}: no entry point {spec.entry_point!r} in group {ENTRY_POINT_GROUP!r}")
        obj = found[0].load()
    # a class or a factory function is called with the params; a ready instance is used as is
    gate = obj(**spec.params) if isinstance(obj, type) or (callable(obj) and not isinstance(obj, Gate)) else obj
    if not isinstance(gate, Gate):
        raise ValueError(f"plugin {spec.name!r}: {obj!r} does not provide name + evaluate(ctx) -> GateResult")
    if getattr(gate, "name", None) != spec.name:
        try:
            gate.name = spec.name
        except AttributeError:
            pass
    return gate


def jsonable(v: Any) -> Any:
    """numpy scalars/arrays and non-finite floats into plain JSON values (NaN/inf -> None)."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return [jsonable(x) for x in v.tolist()]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def fmt(x: float, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"
