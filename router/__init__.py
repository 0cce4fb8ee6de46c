"""Deterministic, sticky, hash-based traffic assignment. Pure: no I/O, no imports of proxy/ or gates/.

The algorithm is specified in docs/bucketing.md; `router/vectors.json` holds the test vectors
another implementation must reproduce.
"""

from router.bucketing import SPEC_VERSION, unit_hash, unit_position
from router.assign import Arm, Assignment, Assigner, MirrorRule

__all__ = [
    "SPEC_VERSION",
    "unit_hash",
    "unit_position",
    "Arm",
    "Assignment",
    "Assigner",
    "MirrorRule",
]
