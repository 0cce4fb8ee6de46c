"""Which variant serves a unit, and which shadows see its request (docs/bucketing.md §3-4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

from router.bucketing import unit_position


@dataclass(frozen=True)
class Arm:
    """A challenger taking ``fraction`` of units (the champion takes what is left)."""

    name: str
    fraction: float


@dataclass(frozen=True)
class MirrorRule:
    """A shadow that sees a copy of the requests of ``fraction`` of units, hashed with its own salt."""

    name: str
    fraction: float
    salt: str


class Assignment(NamedTuple):
    arm: int  # 0 = champion, i = challengers[i - 1]
    mirrors: tuple[int, ...]  # indexes into the shadow rules, in configuration order


class Assigner:
    """Routes one endpoint. Boundaries are summed once here, left to right, as the spec says."""

    def __init__(self, salt: str, challengers: Sequence[Arm] = (), shadows: Sequence[MirrorRule] = ()):
        total = 0.0
        bounds: list[float] = []
        for arm in challengers:
            if not 0.0 <= arm.fraction <= 1.0:
                raise ValueError(f"challenger {arm.name!r}: fraction={arm.fraction!r} must be in [0, 1]")
            total += arm.fraction
            bounds.append(total)
        if total > 1.0 + 1e-12:
            raise ValueError(f"challenger fractions sum to {total!r}, more than 1")
        for rule in shadows:
            if not 0.0 <= rule.fraction <= 1.0:
                raise ValueError(f"shadow {rule.name!r}: fraction={rule.fraction!r} must be in [0, 1]")
        self.salt = salt
        self._bounds = tuple(bounds)
        self._shadows = tuple((r.salt, r.fraction) for r in shadows)
        # Decide once: the common configurations need no hashing at all on the hot path.
        self._all_mirrors = tuple(range(len(shadows)))
        self._mirror_all = all(f >= 1.0 for _, f in self._shadows)

    def arm(self, unit_id: str | None) -> int:
        """0 for the champion, i for challenger i. Units without an id always get the champion."""
        if not self._bounds or unit_id is None:
            return 0
        u = unit_position(self.salt, unit_id)
        for i, bound in enumerate(self._bounds):
            if u < bound:
                return i + 1
        return 0

    def mirrors(self, unit_id: str) -> tuple[int, ...]:
        """Indexes of the shadow rules that mirror this unit's requests."""
        if self._mirror_all:
            return self._all_mirrors
        return tuple(
            i for i, (salt, fraction) in enumerate(self._shadows) if unit_position(salt, unit_id) < fraction
        )

    def assign(self, unit_id: str | None, fallback_id: str) -> Assignment:
        """Route a request. ``fallback_id`` (the request id) stands in for a missing unit id when
        sampling shadows: mirroring is invisible to the user, so it need not be sticky."""
        return Assignment(self.arm(unit_id), self.mirrors(unit_id if unit_id is not None else fallback_id))
