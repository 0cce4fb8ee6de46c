"""The deployment config is validated at start; every error names the key and says why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config import ConfigError, load_config, parse_config


def _cfg(**over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "models": {"m1": {"name": "credit", "version": 1, "backend": {"type": "onnx", "path": "m1.onnx"}},
                   "m2": {"name": "credit", "version": 2, "backend": {"type": "onnx", "path": "m2.onnx"}}},
        "endpoints": {"credit": {"champion": "m1"}},
    }
    cfg.update(over)
    return cfg


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["models"]["m1"].update(version="production"),
     "models.m1.version: 'production' is not a version number; serving pins versions, never aliases"),
    (lambda c: c["models"]["m1"].update(version="@champion"), "models.m1.version: '@champion' is not a version number"),
    (lambda c: c["models"]["m1"].update(version=0), "models.m1.version: Input should be greater than or equal to 1 (got 0)"),
    (lambda c: c["endpoints"]["credit"].update(challengers=[{"model": "m2", "fraction": 1.5}]),
     "endpoints.credit.challengers[0].fraction: Input should be less than or equal to 1 (got 1.5)"),
    (lambda c: c["endpoints"]["credit"].update(challengers=[{"model": "m2", "fraction": 0.7}, {"model": "m1", "fraction": 0.7}]),
     "challenger fractions sum to 1.4, more than 1"),
    (lambda c: c["endpoints"]["credit"].update(champion="m9"), "endpoints.credit.champion: unknown model 'm9'"),
    (lambda c: c["endpoints"]["credit"].update(shadows=[{"model": "m2", "timeout_ms": -1}]),
     "endpoints.credit.shadows[0].timeout_ms: Input should be greater than 0 (got -1)"),
    (lambda c: c["models"]["m1"]["backend"].update(type="tensorflow"), "models.m1.backend: Input tag 'tensorflow'"),
    (lambda c: c["models"]["m1"]["backend"].update(paht="x"), "models.m1.backend.paht: Extra inputs are not permitted"),
    (lambda c: c.update(sink={"type": "file", "segment_max_bytes": 10}), "sink.segment_max_bytes: Input should be greater than or equal to 1024 (got 10)"),
    (lambda c: c.update(server={"on_missing_unit_id": "random"}), "server.on_missing_unit_id: Input should be 'champion' or 'reject'"),
    (lambda c: c.update(endpoints={}), "endpoints: Dictionary should have at least 1 item"),
])
def test_errors_name_the_key(mutate: Any, message: str) -> None:
    cfg = _cfg()
    mutate(cfg)
    with pytest.raises(ConfigError) as info:
        parse_config(cfg)
    assert message in str(info.value)


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    p = tmp_path / "deploy.yaml"
    p.write_text(yaml.safe_dump(_cfg()))
    cfg = load_config(p)
    assert cfg.models["m1"].backend.path == tmp_path / "m1.onnx"
    assert cfg.sink.directory == tmp_path / "shadowlog"


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")


def test_cli_reports_config_errors_without_traceback(tmp_path: Path) -> None:
    cfg = _cfg()
    cfg["models"]["m1"]["version"] = "latest"
    p = tmp_path / "deploy.yaml"
    p.write_text(yaml.safe_dump(cfg))
    for cmd in (["check-config", str(p)], ["serve", "--config", str(p)]):
        out = subprocess.run([sys.executable, "-m", "shadowlane", *cmd], capture_output=True, text=True, timeout=60)
        assert out.returncode == 2
        assert "models.m1.version: 'latest' is not a version number" in out.stderr
        assert "Traceback" not in out.stderr


def test_serve_reports_an_unloadable_champion(tmp_path: Path) -> None:
    (tmp_path / "m1.onnx").write_bytes(b"not an onnx file")
    p = tmp_path / "deploy.yaml"
    p.write_text(yaml.safe_dump(_cfg()))
    out = subprocess.run([sys.executable, "-m", "shadowlane", "serve", "--config", str(p)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "cannot load ONNX model credit v1" in out.stderr
    assert "Traceback" not in out.stderr
