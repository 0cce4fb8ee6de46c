"""`shadowlane demo` runs the main job end to end and leaves a valid shadow log behind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jsonschema

from shadowlane.record import decode, json_schema
from shadowlane.segments import read_lines


def test_demo_end_to_end(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "shadowlane", "demo", "--dir", str(tmp_path / "d"),
                          "--requests", "400", "--users", "50", "--concurrency", "8"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"requests served\s+400\s+\(0 failed\)", out.stdout), out.stdout
    assert re.search(r"shadow records\s+400\s+\(400 with a shadow answer\)", out.stdout), out.stdout
    agreement = float(re.search(r"label agreement\s+([\d.]+)%", out.stdout).group(1))
    assert 80 < agreement < 100  # the two models differ a little, on purpose
    log_dir = tmp_path / "d" / "shadowlog"
    assert f"shadow log: {log_dir}" in out.stdout
    records = [decode(l) for l in read_lines(log_dir)]
    assert len(records) == 400 and len({r["request_id"] for r in records}) == 400
    jsonschema.validate(records[0], json_schema())
    assert {r["attributes"]["segment"] for r in records} == {"consumer", "small_business"}
