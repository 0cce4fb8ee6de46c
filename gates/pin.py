"""`shadowlane pin`: resolve registry aliases in a deployment config to pinned version numbers.

Serving never follows an alias (a moved alias would silently change what answers users). The
input config may say ``version: "@production"`` for a model; the output has the number the alias
points at now, is validated with the proxy's own `parse_config`, and starts with a comment saying
what was resolved from where. The proxy itself keeps rejecting anything but integers.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient

from gates.registry import RegistryError, get_version, version_for_alias
from proxy.config import ConfigError, DeploymentConfig, parse_config

_ALIAS_RE = re.compile(r"^@([A-Za-z0-9_\-]+)$")
# An alias should point at a version in the matching lifecycle stage; a mismatch is refused.
_ALIAS_STAGE = {"production": "Production", "staging": "Staging"}


class PinError(ValueError):
    """The config could not be pinned; names the model key and alias."""


@dataclass(frozen=True)
class Pinned:
    key: str  # models.<key>
    name: str  # registry name
    ref: str  # what the input said ("@production", "3")
    version: int


def pin_document(doc: dict[str, Any], client: MlflowClient) -> tuple[dict[str, Any], list[Pinned]]:
    """A copy of the parsed config with every ``models.<key>.version`` an int; checks each exists."""
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise PinError("the config has no 'models' mapping")
    out = copy.deepcopy(doc)
    pins: list[Pinned] = []
    for key, model in out["models"].items():
        if not isinstance(model, dict) or not model.get("name"):
            raise PinError(f"models.{key}: needs a 'name' (the registry name)")
        name, ref = str(model["name"]), model.get("version")
        m = _ALIAS_RE.match(ref) if isinstance(ref, str) else None
        if m:
            alias = m.group(1)
            try:
                version = version_for_alias(client, name, alias)
            except RegistryError as err:
                raise PinError(f"models.{key}: {err}") from None
            if version is None:
                raise PinError(f"models.{key}.version: alias {ref!r} is not set on registered model {name!r}")
            stage = get_version(client, name, version).tags.get("lifecycle.stage", "None")
            want = _ALIAS_STAGE.get(alias)
            if want and stage != want:
                raise PinError(f"models.{key}.version: {name}@{alias} points at v{version}, whose lifecycle "
                               f"stage is {stage}, not {want}")
        elif isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            version = int(ref)
            try:
                get_version(client, name, version)
            except RegistryError as err:
                raise PinError(f"models.{key}.version: {err}") from None
        else:
            raise PinError(f"models.{key}.version: {ref!r} is neither a version number nor an alias like '@production'")
        model["version"] = version
        pins.append(Pinned(key, name, str(ref), version))
    return out, pins


def pin_file(config: str | Path, client: MlflowClient, *, registry_uri: str,
             out: str | Path | None = None) -> tuple[str, DeploymentConfig, list[Pinned]]:
    """Pin `config`; validate the result as the proxy would; write it to `out` if given.

    Returns (yaml text, validated config, pins). Raises PinError / ConfigError naming the problem.
    """
    config = Path(config)
    try:
        doc = yaml.safe_load(config.read_text())
    except OSError as err:
        raise PinError(f"cannot read {config}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise PinError(f"{config}: not valid YAML: {err}") from None
    pinned, pins = pin_document(doc, client)
    base = (Path(out).resolve().parent if out else config.resolve().parent)
    try:
        cfg = parse_config(pinned, base_dir=base)
    except ConfigError as err:
        raise ConfigError(f"the pinned config is not valid for the proxy:\n{err}") from None
    header = [f"# pinned by `shadowlane pin` from {config.name} at "
              f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}",
              f"# registry: {_redact(registry_uri)}"]
    header += [f"#   models.{p.key}: {p.name} {p.ref} -> version {p.version}" for p in pins]
    text = "\n".join(header) + "\n" + yaml.safe_dump(pinned, sort_keys=False)
    if out is not None:
        Path(out).write_text(text)
    return text, cfg, pins


def _redact(uri: str) -> str:
    """Drop credentials from a URI before writing it anywhere."""
    return re.sub(r"//[^/@]+@", "//***@", uri)
