"""The deployment config: one YAML file, validated once at start.

Every error names the key path and says why, e.g.
``endpoints.credit.challengers[0].fraction: Input should be less than or equal to 1 (got 1.5)``.
Model versions are pinned integers; aliases are resolved offline by `shadowlane pin`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """The deployment config is unusable; `str()` lists every problem, one per line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OnnxBackend(_Strict):
    type: Literal["onnx"]
    path: Path
    intra_op_threads: int = Field(1, ge=1)


class PythonBackend(_Strict):
    """A Python class `module:Class` with `predict(feeds) -> outputs`; for custom models and tests."""

    type: Literal["python"]
    target: str = Field(pattern=r"^[\w.]+:[\w.]+$")
    kwargs: dict[str, Any] = {}


class HttpBackend(_Strict):
    """A remote model server speaking OIP (KServe V2) or MLflow scoring."""

    type: Literal["http"]
    url: str = Field(pattern=r"^https?://")
    protocol: Literal["oip", "mlflow"] = "oip"
    remote_model: str | None = None  # OIP model name upstream (default: the model's name)
    remote_version: str | None = None
    connect_timeout_ms: float = Field(1000, gt=0)
    timeout_ms: float = Field(5000, gt=0)
    max_connections: int = Field(64, ge=1)
    breaker_failures: int = Field(5, ge=1)
    breaker_cooldown_ms: float = Field(5000, gt=0)
    inputs: list[dict[str, Any]] | None = None  # metadata override when the upstream has none
    outputs: list[dict[str, Any]] | None = None


Backend = Annotated[Union[OnnxBackend, PythonBackend, HttpBackend], Field(discriminator="type")]


class ModelConfig(_Strict):
    name: str = Field(min_length=1)  # registry name
    version: int = Field(ge=1)  # pinned registry version
    backend: Backend
    feature_names: list[str] | None = None  # column names of a single 2-D input

    @field_validator("version", mode="before")
    @classmethod
    def _pinned(cls, v: Any) -> Any:
        if isinstance(v, str) and not v.isdigit():
            raise ValueError(
                f"{v!r} is not a version number; serving pins versions, never aliases "
                "(resolve aliases with `shadowlane pin`)")
        return v


class ChallengerConfig(_Strict):
    model: str
    fraction: float = Field(ge=0.0, le=1.0)


class ShadowConfig(_Strict):
    model: str
    fraction: float = Field(1.0, ge=0.0, le=1.0)
    salt: str | None = None  # default: "<endpoint>/shadow/<model>"
    timeout_ms: float = Field(1000, gt=0)
    # Where an in-process shadow runs. "inline": on the event loop between requests (cheapest
    # for small models: no thread hand-off, no GIL convoy); "thread": its own thread (needed
    # for slow or unpredictable models); "auto": inline for ONNX models whose warm-up calls take
    # under `inline_max_ms`, else thread, and demoted to thread if an inline call overruns.
    executor: Literal["auto", "inline", "thread"] = "auto"
    inline_max_ms: float = Field(0.5, gt=0)


class EndpointConfig(_Strict):
    champion: str
    salt: str | None = None  # challenger experiment salt (default: the endpoint name)
    challengers: list[ChallengerConfig] = []
    shadows: list[ShadowConfig] = []

    @model_validator(mode="after")
    def _fractions(self) -> "EndpointConfig":
        total = sum(c.fraction for c in self.challengers)
        if total > 1.0 + 1e-9:
            raise ValueError(f"challenger fractions sum to {total:g}, more than 1")
        return self


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    unit_id_header: str = "x-user-id"
    unit_id_param: str = "user_id"  # query parameter, or OIP request `parameters`
    on_missing_unit_id: Literal["champion", "reject"] = "champion"
    request_id_header: str = "x-request-id"
    attribute_headers: dict[str, str] = {}  # record attribute -> request header, for segments
    invocations_endpoint: str | None = None  # endpoint behind MLflow's POST /invocations

    @field_validator("unit_id_header", "request_id_header")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower()


class ShadowSettings(_Strict):
    queue_size: int = Field(10_000, ge=1)
    workers: int = Field(1, ge=1)
    # Shadow jobs drained and run as one batch, after waiting up to linger_ms for it to fill.
    # 64 / 2 ms: at a fixed rate with no drops, 16 / 0.5 ms cost ~25% more CPU a request; it only
    # looked cheaper at saturation, where it dropped more shadow jobs (docs/performance.md).
    max_batch: int = Field(64, ge=1)
    linger_ms: float = Field(2, ge=0)
    record_features: bool = True


class FileSinkConfig(_Strict):
    type: Literal["file"] = "file"
    directory: Path = Path("shadowlog")
    segment_max_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    flush_interval_ms: float = Field(50, gt=0)
    max_buffered_records: int = Field(100_000, ge=1)


class NullSinkConfig(_Strict):
    type: Literal["none"]


class KafkaSinkConfig(_Strict):
    type: Literal["kafka"]
    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "shadowlane.shadow-records"
    requests_topic: str = "shadowlane.requests"
    mode: Literal["inprocess", "decoupled"] = "inprocess"
    linger_ms: int = Field(10, ge=0)
    max_batch_bytes: int = Field(131072, ge=1024)
    compression: Literal["gzip", "none"] = "gzip"
    request_timeout_ms: int = Field(5000, ge=100)
    max_buffered_records: int = Field(100_000, ge=1)
    spill_directory: Path = Path("shadowlog-spill")
    spill_max_bytes: int = Field(1024 * 1024 * 1024, ge=1024)


Sink = Annotated[Union[FileSinkConfig, KafkaSinkConfig, NullSinkConfig], Field(discriminator="type")]


class DeploymentConfig(_Strict):
    server: ServerConfig = ServerConfig()
    shadow: ShadowSettings = ShadowSettings()
    sink: Sink = FileSinkConfig()
    models: dict[str, ModelConfig]
    endpoints: dict[str, EndpointConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> "DeploymentConfig":
        problems = []
        for ep_name, ep in self.endpoints.items():
            refs = [("champion", ep.champion)]
            refs += [(f"challengers[{i}].model", c.model) for i, c in enumerate(ep.challengers)]
            refs += [(f"shadows[{i}].model", s.model) for i, s in enumerate(ep.shadows)]
            for where, ref in refs:
                if ref not in self.models:
                    problems.append(f"endpoints.{ep_name}.{where}: unknown model {ref!r} "
                                    f"(models defines {sorted(self.models)})")
        inv = self.server.invocations_endpoint
        if inv is not None and inv not in self.endpoints:
            problems.append(f"server.invocations_endpoint: unknown endpoint {inv!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        path = ""
        for part in e["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif part in ("onnx", "python", "http", "file", "kafka", "none"):
                continue  # discriminator tags pydantic adds to the path
            else:
                path += ("." if path else "") + str(part)
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        suffix = f" (got {got!r})" if e["type"] not in ("missing", "value_error", "model_type") and not isinstance(got, (dict, list)) else ""
        lines.append(f"{path or '<top>'}: {msg}{suffix}")
    return "\n".join(lines)


def parse_config(data: Any, *, base_dir: Path | None = None) -> DeploymentConfig:
    """Validate a parsed YAML document. Relative file paths are resolved against `base_dir`."""
    try:
        cfg = DeploymentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format(err)) from None
    if base_dir is not None:
        cfg = _resolve_paths(cfg, base_dir)
    return cfg


def load_config(path: str | Path) -> DeploymentConfig:
    """Read and validate a deployment config file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return parse_config(data, base_dir=path.parent.resolve())


def _resolve_paths(cfg: DeploymentConfig, base: Path) -> DeploymentConfig:
    def absolute(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    models = {
        k: m.model_copy(update={"backend": m.backend.model_copy(update={"path": absolute(m.backend.path)})})
        if isinstance(m.backend, OnnxBackend) else m
        for k, m in cfg.models.items()
    }
    sink = cfg.sink
    if isinstance(sink, FileSinkConfig):
        sink = sink.model_copy(update={"directory": absolute(sink.directory)})
    elif isinstance(sink, KafkaSinkConfig):
        sink = sink.model_copy(update={"spill_directory": absolute(sink.spill_directory)})
    return cfg.model_copy(update={"models": models, "sink": sink})
