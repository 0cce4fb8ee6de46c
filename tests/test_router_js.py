"""A second implementation of docs/bucketing.md in JavaScript reproduces every test vector.

This is what makes the spec, not the Python package, the contract: Node's XXH3 (a different
binding of xxHash) and JavaScript's own number handling must land every unit in the same arm.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REF = Path(__file__).resolve().parents[1] / "router" / "reference"


def test_javascript_reference_matches_vectors() -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed for the cross-language check (see scripts/setup.sh)"
    if not (REF / "node_modules" / "@node-rs" / "xxhash").exists():
        subprocess.run([npm, "ci", "--silent", "--no-audit", "--no-fund"], cwd=REF, check=True, timeout=300)
    out = subprocess.run([node, "bucketing.mjs", "../vectors.json"], cwd=REF, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("0 failed")
