"""Regenerate router/vectors.json (run: python -m router.make_vectors). The checked-in file is
the contract: a change to the algorithm that alters any vector is a breaking change."""

from __future__ import annotations

import json
from pathlib import Path

from router.assign import Arm, Assigner, MirrorRule
from router.bucketing import SPEC_VERSION, unit_hash, unit_position

UNITS = ["", "user-1", "user-2", "user-123456789", "42", "ÄÖÜ-straße", "用户-7", "🙂-emoji",
         "a" * 64, "user-1 ", "USER-1"]
SALTS = ["", "exp-shadow-v2", "credit/shadow/credit-v2", "credit-2026-11"]


def build() -> dict[str, object]:
    hashes = [
        {"salt": s, "unit_id": u, "key_utf8_hex": f"{s}:{u}".encode().hex(),
         "xxh3_64": f"{unit_hash(s, u):016x}", "position": unit_position(s, u)}
        for s in SALTS for u in UNITS
    ]
    arms = [Arm("credit-v2", 0.1), Arm("credit-v3", 0.25)]
    shadows = [MirrorRule("credit-v4", 0.5, "credit/shadow/credit-v4"), MirrorRule("credit-v5", 1.0, "s5")]
    a = Assigner("credit-2026-11", arms, shadows)
    assignments = [
        {"unit_id": u, "arm": a.arm(u), "variant": ["champion", "credit-v2", "credit-v3"][a.arm(u)],
         "mirrors": list(a.mirrors(u))}
        for u in [f"user-{i}" for i in range(40)] + UNITS
    ]
    return {
        "spec_version": SPEC_VERSION,
        "hash": "XXH3_64(UTF-8(salt + ':' + unit_id), seed=0); position = (h >> 11) * 2**-53",
        "hashes": hashes,
        "assignment_config": {
            "salt": "credit-2026-11",
            "challengers": [{"name": x.name, "fraction": x.fraction} for x in arms],
            "shadows": [{"name": x.name, "fraction": x.fraction, "salt": x.salt} for x in shadows],
        },
        "assignments": assignments,
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("vectors.json")
    out.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}")
