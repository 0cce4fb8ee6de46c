"""The hash at the bottom of every routing decision (docs/bucketing.md, spec version 1).

    key      = UTF-8(salt) || b":" || UTF-8(unit_id)
    h        = XXH3_64(key, seed=0)             unsigned 64-bit
    position = (h >> 11) * 2**-53               exact double in [0, 1)

Hashing bytes rather than language strings keeps JavaScript (UTF-16) and Python (code points)
in agreement; the 53-bit shift makes `position` exactly representable, so `position < fraction`
is decided identically in every IEEE-754 language.
"""

from __future__ import annotations

from xxhash import xxh3_64_intdigest

SPEC_VERSION = 1
_TWO_POW_MINUS_53 = 2.0**-53


def unit_hash(salt: str, unit_id: str) -> int:
    """XXH3-64 (seed 0) of ``salt:unit_id`` encoded as UTF-8; an unsigned 64-bit integer."""
    return xxh3_64_intdigest(f"{salt}:{unit_id}".encode())


def unit_position(salt: str, unit_id: str) -> float:
    """Where a unit falls in [0, 1) for one experiment (salt). Monotone ramps keep units in."""
    return (xxh3_64_intdigest(f"{salt}:{unit_id}".encode()) >> 11) * _TWO_POW_MINUS_53
