"""Shared test setup. Fixture modules live in tests/fixtures/ and are all loaded here, so each
area (proxy, kafka, mlflow, ...) keeps its own fixtures in its own file."""

import pkgutil
from pathlib import Path

pytest_plugins = [
    f"tests.fixtures.{m.name}"
    for m in pkgutil.iter_modules([str(Path(__file__).parent / "fixtures")])
    if not m.name.startswith("_")
]
