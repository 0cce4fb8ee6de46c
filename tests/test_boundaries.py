"""The dependency direction the architecture promises, checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys


def _loaded_after(stmt: str) -> set[str]:
    code = f"import sys; {stmt}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(out.stdout.split())


def test_serving_process_never_imports_gates_or_mlflow() -> None:
    loaded = _loaded_after("import proxy.app, proxy.server, proxy.cli, shadowlane.cli")
    assert "proxy" in loaded
    assert not loaded & {"gates", "mlflow", "sklearn", "pandas", "scipy"}, loaded & {"gates", "mlflow", "sklearn", "pandas", "scipy"}


def test_router_imports_nothing_of_ours() -> None:
    loaded = _loaded_after("import router")
    assert not loaded & {"proxy", "gates", "shadowlane"}


def test_record_format_is_shared_not_owned_by_the_proxy() -> None:
    loaded = _loaded_after("import shadowlane.record, shadowlane.segments")
    assert not loaded & {"proxy", "gates"}
