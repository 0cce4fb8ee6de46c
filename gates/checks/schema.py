"""Schema gate: the candidate's MLflow signature against the features production actually sends,
by name and type, reporting every mismatch (not just the first).

Accepts a `mlflow.models.ModelSignature` or its `to_dict()` form (whose values are JSON strings).
Column signatures are checked column by column; tensor signatures by input name and inner shape.
"""

from __future__ import annotations

import json
from typing import Any

from gates.checks.base import GateContext, GateResult

# MLflow column type -> JSON types production may send for it
_COLUMN_OK: dict[str, set[str]] = {
    "double": {"float", "int"}, "float": {"float", "int"},
    "long": {"int"}, "integer": {"int"},
    "boolean": {"bool"}, "string": {"str"}, "binary": {"str"}, "datetime": {"str"},
}


def _tensor_ok(dtype: str) -> set[str]:
    if dtype.startswith("float"):
        return {"float", "int"}
    if dtype.startswith(("int", "uint")):
        return {"int"}
    if dtype == "bool":
        return {"bool"}
    return {"str"}


def signature_inputs(signature: Any) -> list[dict[str, Any]]:
    """The input specs of a signature as a list of dicts."""
    if hasattr(signature, "to_dict"):
        signature = signature.to_dict()
    if not isinstance(signature, dict) or "inputs" not in signature:
        raise ValueError("signature must be an mlflow ModelSignature or its to_dict() with an 'inputs' key")
    inputs = signature["inputs"]
    if isinstance(inputs, str):
        inputs = json.loads(inputs)
    if not isinstance(inputs, list):
        raise ValueError(f"signature inputs must be a list of specs, got {type(inputs).__name__}")
    return inputs


class SchemaGate:
    name = "schema"

    def evaluate(self, ctx: GateContext) -> GateResult:
        if ctx.signature is None:
            return GateResult(self.name, False, "no signature for the candidate "
                              "(schema.signature in the gate config, or --signature)", {})
        specs = signature_inputs(ctx.signature)
        sample = ctx.frame.features
        if any(s.get("type") == "tensor" for s in specs):
            mismatches, extra = self._tensors(specs, sample)
        else:
            mismatches, extra = self._columns(specs, sample)
        if ctx.config.schema_.fail_on_extra:
            mismatches += [f"production sends {n!r}, which the signature does not declare" for n in extra]
        values = {"mismatches": mismatches, "extra": extra, "expected": specs,
                  "production_types": {k: sorted(v) for k, v in sample.json_types.items()}}
        if mismatches:
            return GateResult(self.name, False, f"{len(mismatches)} mismatch(es): " + "; ".join(mismatches), values)
        note = f" (production also sends {extra}, ignored)" if extra else ""
        return GateResult(self.name, True, f"all {len(specs)} signature inputs match production{note}", values)

    @staticmethod
    def _columns(specs: list[dict[str, Any]], sample: Any) -> tuple[list[str], list[str]]:
        mismatches = []
        declared = set()
        for s in specs:
            name, typ, required = s.get("name"), s.get("type"), s.get("required", True)
            declared.add(name)
            if name not in sample.names_seen:
                if required:
                    mismatches.append(f"missing required column {name!r} ({typ})")
                continue
            seen = set(sample.json_types.get(name, set()))
            if "null" in seen and required:
                mismatches.append(f"column {name!r} is required but production sends null")
            seen.discard("null")
            ok = _COLUMN_OK.get(str(typ), set())
            bad = sorted(seen - ok)
            if bad:
                mismatches.append(f"column {name!r}: production sends {'/'.join(bad)}, signature expects {typ}")
        extra = sorted(sample.names_seen - declared)
        return mismatches, extra

    @staticmethod
    def _tensors(specs: list[dict[str, Any]], sample: Any) -> tuple[list[str], list[str]]:
        mismatches = []
        declared = set()
        tensors = sample.tensor_shapes
        for s in specs:
            ts = s.get("tensor-spec", {})
            dtype, shape = str(ts.get("dtype", "")), list(ts.get("shape", []))
            name = s.get("name")
            if name is None:  # an unnamed tensor: production's only tensor input, if it sends one
                name = next(iter(tensors)) if len(tensors) == 1 else None
            declared.add(name)
            if name is None or name not in sample.inputs_seen:
                if tensors or name is not None:
                    mismatches.append(f"missing tensor input {s.get('name') or '<unnamed>'!r} {dtype}{shape}")
                    continue
                # production sends named columns for one 2-D input (proxy feature_names)
                width = len(sample.names_seen)
                if len(shape) == 2 and shape[1] != -1 and shape[1] != width:
                    mismatches.append(f"tensor {dtype}{shape} expects {shape[1]} columns, production sends {width}")
                declared.update(sample.names_seen)
                cols = sample.names_seen
            else:
                for inner in sorted(tensors.get(name, set())):
                    want = tuple(shape[1:])
                    if len(inner) != len(want) or any(w != -1 and w != g for w, g in zip(want, inner)):
                        mismatches.append(f"tensor {name!r}: production rows have shape {list(inner)}, "
                                          f"signature expects {shape}")
                cols = {name}
            bad = sorted({t for c in cols for t in sample.json_types.get(c, set())} - _tensor_ok(dtype))
            if bad:
                mismatches.append(f"tensor {name!r}: production sends {'/'.join(bad)}, signature expects {dtype}")
        extra = sorted(sample.inputs_seen - declared)
        return mismatches, extra
