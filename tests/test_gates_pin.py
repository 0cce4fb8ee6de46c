"""`shadowlane pin`: aliases in a deployment config resolve to the numbers they point at now, the
result passes the proxy's own config validation, and the proxy still refuses aliases itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gates.audit import AuditLog
from gates.cli import pin_main
from gates.lifecycle import Lifecycle
from gates.pin import PinError, pin_file
from gates.registry import record_gate_results
from gates.review import CHECKLIST
from proxy.config import ConfigError, load_config, parse_config
from tests.fixtures.mlflow import evaluation_dict, register_credit


NAME = "pinned-credit"


@pytest.fixture(scope="module")
def registry(mlflow_client, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Registered model NAME: v1 archived, v2 Production, v3 Staging, v4 registered only."""
    audit = AuditLog(tmp_path_factory.mktemp("pin") / "audit.jsonl",
                     clock=iter(range(10**9, 10**9 + 10**6, 1000)).__next__)
    lc = Lifecycle(mlflow_client, audit)
    for v in (1, 2, 3, 4):
        register_credit(mlflow_client, NAME)
        if v == 4:
            break
        record_gate_results(mlflow_client, NAME, v, evaluation_dict(NAME, v), audit=audit)
        lc.promote(NAME, v, "staging", "alice")
        if v < 3:
            lc.reviews.request(NAME, v, "alice")
            lc.reviews.approve(NAME, v, "rita", {k: "yes" for k in CHECKLIST})
            lc.promote(NAME, v, "production", "alice")
    return mlflow_client


def _config(tmp_path: Path, name: str, champion: object, shadow: object) -> Path:
    doc = {
        "models": {
            "champ": {"name": name, "version": champion, "backend": {"type": "onnx", "path": "models/champ.onnx"}},
            "cand": {"name": name, "version": shadow, "backend": {"type": "onnx", "path": "models/cand.onnx"}},
        },
        "endpoints": {"credit": {"champion": "champ", "shadows": [{"model": "cand", "fraction": 1.0}]}},
    }
    p = tmp_path / "deploy.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def test_proxy_itself_refuses_aliases(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="never aliases"):
        load_config(_config(tmp_path, "credit", "@production", 3))


def test_pin_resolves_aliases_and_validates(registry, mlflow_uri: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = _config(tmp_path, NAME, "@production", "@staging")
    out = tmp_path / "pinned.yaml"
    text, cfg, pins = pin_file(src, registry, registry_uri=mlflow_uri, out=out)
    assert [(p.key, p.ref, p.version) for p in pins] == [("champ", "@production", 2), ("cand", "@staging", 3)]
    assert cfg.models["champ"].version == 2 and cfg.models["cand"].version == 3
    assert cfg.models["champ"].backend.path == tmp_path / "models/champ.onnx"
    # The written file is what the proxy loads, with a header saying what was resolved.
    loaded = load_config(out)
    assert loaded.models["champ"].version == 2 and loaded.models["cand"].version == 3
    assert "@production -> version 2" in out.read_text().splitlines()[2]
    assert yaml.safe_load(text)["models"]["cand"]["version"] == 3


def test_pin_keeps_numbers_and_checks_they_exist(registry, mlflow_uri: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, cfg, _ = pin_file(_config(tmp_path, NAME, "@production", "4"), registry, registry_uri=mlflow_uri)
    assert cfg.models["cand"].version == 4
    with pytest.raises(PinError, match="models.cand.version: model .* version 9 not found"):
        pin_file(_config(tmp_path, NAME, "@production", 9), registry, registry_uri=mlflow_uri)


@pytest.mark.parametrize("ref, message", [
    ("@challenger", "alias '@challenger' is not set"),
    ("latest", "neither a version number nor an alias"),
])
def test_pin_errors_name_the_model(registry, mlflow_uri: str, tmp_path: Path, ref: str, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PinError, match=message):
        pin_file(_config(tmp_path, NAME, "@production", ref), registry, registry_uri=mlflow_uri)


def test_pin_refuses_an_alias_whose_stage_disagrees(registry, mlflow_uri: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry.set_registered_model_alias(NAME, "staging", "4")  # moved by hand, v4 never passed its gates
    try:
        with pytest.raises(PinError, match="points at v4, whose lifecycle stage is None, not Staging"):
            pin_file(_config(tmp_path, NAME, "@production", "@staging"), registry, registry_uri=mlflow_uri)
    finally:
        registry.set_registered_model_alias(NAME, "staging", "3")


def test_pin_cli(registry, mlflow_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    src = _config(tmp_path, NAME, "@production", "@staging")
    out = tmp_path / "pinned.yaml"
    assert pin_main(["--config", str(src), "--registry-uri", mlflow_uri, "--out", str(out)]) == 0
    assert "models.champ: " in capsys.readouterr().out
    assert parse_config(yaml.safe_load(out.read_text())).models["champ"].version == 2
    assert pin_main(["--config", str(src), "--registry-uri", mlflow_uri]) == 0  # to stdout
    assert "version: 3" in capsys.readouterr().out
    bad = _config(tmp_path, NAME, "@gone", 1)
    assert pin_main(["--config", str(bad), "--registry-uri", mlflow_uri]) == 1
    assert "models.champ.version: alias '@gone' is not set" in capsys.readouterr().err
