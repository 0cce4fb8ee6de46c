"""mypy passes on the serving code and the shared record format (configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

from tests.fixtures.proxy import REPO


def test_mypy_is_clean() -> None:
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "--cache-dir", "/tmp/shadowlane-mypy-cache"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
