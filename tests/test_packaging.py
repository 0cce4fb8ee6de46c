"""The wheel (what the Dockerfile installs) carries every module and data file of the packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.fixtures.proxy import REPO

PACKAGES = ("proxy", "router", "gates", "shadowlane")


def test_wheel_contains_every_module_and_data_file(tmp_path: Path) -> None:
    # Build from a clean copy of the tracked files: a stale build/ directory would hide a package
    # that setuptools no longer finds.
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if (REPO / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, src / f)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(src)], check=True, timeout=300, capture_output=True)
    (wheel,) = tmp_path.glob("shadowlane-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(p.relative_to(REPO)) for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")
                if "reference" not in p.parts}
    expected |= {"router/vectors.json", "shadowlane/schemas/shadow-record.v1.json",
                 "shadowlane/schemas/request-record.v1.json"}
    assert expected - names == set()
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "shadowlane = shadowlane.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
