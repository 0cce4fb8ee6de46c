"""What the suite measures: each scenario is a set of servers (pinned to the server CPU) whose
last one receives the load. Baselines and shadowlane configurations side by side.

A scenario whose pieces are missing (nginx, granian, a Kafka broker, a proxy feature) says why
via `needs()` and is left out of the run, never faked.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from bench import nginx
from bench.procs import Server, free_port
from shadowlane.demo_models import CREDIT_FEATURES, credit_model, save

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv" / "bin"
PY = str(VENV / "python")


@dataclass
class Context:
    """Shared by all scenarios of one run: work directory, model files, the Kafka broker."""

    work: Path
    kafka_bootstrap: str | None = None
    kafka_missing: str | None = "no Kafka broker was started"
    models: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        d = self.work / "models"
        shift = np.array([0.05, -0.05, 0.1, 0, 0, 0.05, 0, 0, -0.05, 0.1], np.float32)
        self.models = {
            "champion": save(credit_model(), d / "champion.onnx"),
            "shadow": save(credit_model(weight_shift=shift), d / "shadow.onnx"),
            "challenger-a": save(credit_model(weight_shift=-shift, bias_shift=0.1), d / "challenger-a.onnx"),
            "challenger-b": save(credit_model(bias_shift=-0.1), d / "challenger-b.onnx"),
        }

    def log(self, name: str) -> Path:
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        return self.work / "logs" / f"{name}.log"


@dataclass
class Scenario:
    name: str
    title: str
    group: str  # "baseline" | "shadowlane"
    build: Callable[[Context], list[Server]]  # the last server receives the load
    baseline: str | None = None  # the scenario its throughput ratio is taken against
    needs: Callable[[Context], str | None] = lambda ctx: None
    sink_dir: Callable[[Context], Path | None] = lambda ctx: None  # file sink directory, to count records
    metrics: bool = False  # scrape shadowlane's /metrics at the end


# ------------------------------------------------------------------------------ server argv

def uvicorn_argv(app: str, port: int, *, lifespan: str = "off", factory: bool = False) -> list[str]:
    return [PY, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop",
            "--http", "httptools", "--no-access-log", "--log-level", "warning", "--lifespan", lifespan,
            *(["--factory"] if factory else [])]


def granian_argv(app: str, port: int, *, factory: bool = False, workers: int = 1) -> list[str]:
    return [str(VENV / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--loop", "uvloop", "--no-ws", "--log-level", "warning",
            "--no-access-log", *(["--factory"] if factory else []), app]


def _granian_missing(ctx: Context) -> str | None:
    return None if (VENV / "granian").exists() else "granian is not installed (pip install -e '.[bench]')"


def _proxy_missing(ctx: Context) -> str | None:
    if importlib.util.find_spec("proxy.app") is None:
        return "proxy/app.py is not there"
    return None


def _kafka_missing(ctx: Context) -> str | None:
    return _proxy_missing(ctx) or (None if ctx.kafka_bootstrap else ctx.kafka_missing)


def _decoupled_missing(ctx: Context) -> str | None:
    missing = _kafka_missing(ctx)
    if missing:
        return missing
    # The proxy side of decoupled mode publishes request records through the sink.
    src = "".join((ROOT / "proxy" / f).read_text() for f in ("hotpath.py", "shadow.py", "app.py")
                  if (ROOT / "proxy" / f).exists())
    if "emit_request" not in src:
        return "decoupled mode: the proxy does not publish request records yet (no emit_request call in proxy/)"
    return None


def _upstream_server(ctx: Context, name: str, *, reply_204: bool = False) -> Server:
    port = free_port()
    env = {"BENCH_ONNX_MODEL": str(ctx.models["champion"])}
    if reply_204:
        env["BENCH_REPLY_204"] = "1"
    return Server(name, uvicorn_argv("bench.servers.oip_model:app", port), port, ctx.log(name), env=env, cwd=str(ROOT))


# ------------------------------------------------------------------------------ shadowlane configs

def deploy_config(ctx: Context, name: str, *, shadow: bool = False, challengers: bool = False,
                  sink: str = "none", mode: str = "inprocess", upstream_port: int | None = None) -> Path:
    """Write a deployment config for scenario `name`; returns its path."""
    d = ctx.work / name
    d.mkdir(parents=True, exist_ok=True)
    feats = list(CREDIT_FEATURES)

    def onnx(key: str, version: int) -> dict[str, Any]:
        return {"name": "credit", "version": version, "feature_names": feats,
                "backend": {"type": "onnx", "path": str(ctx.models[key])}}

    champion = onnx("champion", 1)
    if upstream_port is not None:
        champion["backend"] = {"type": "http", "url": f"http://127.0.0.1:{upstream_port}", "protocol": "oip",
                               "remote_model": "credit"}
    models = {"credit-v1": champion, "credit-v2": onnx("shadow", 2),
              "credit-v3": onnx("challenger-a", 3), "credit-v4": onnx("challenger-b", 4)}
    endpoint: dict[str, Any] = {"champion": "credit-v1", "shadows": [], "challengers": []}
    if shadow:
        endpoint["shadows"] = [{"model": "credit-v2", "fraction": 1.0}]
    if challengers:
        endpoint["challengers"] = [{"model": "credit-v3", "fraction": 0.1}, {"model": "credit-v4", "fraction": 0.1}]
    sink_cfg: dict[str, Any] = {"type": sink}
    if sink == "file":
        sink_cfg["directory"] = str(d / "shadowlog")
    elif sink == "kafka":
        sink_cfg.update(bootstrap_servers=ctx.kafka_bootstrap, topic=f"bench.{name}.records",
                        requests_topic=f"bench.{name}.requests", mode=mode, spill_directory=str(d / "spill"))
    cfg = {"server": {"invocations_endpoint": "credit"}, "sink": sink_cfg, "models": models,
           "endpoints": {"credit": endpoint}}
    path = d / "deploy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def shadowlane_server(ctx: Context, name: str, config: Path, *, workers: int = 1, server: str = "uvicorn") -> Server:
    port = free_port()
    if server == "granian":
        argv = granian_argv("proxy.server:app_factory", port, factory=True, workers=workers)
        return Server(name, argv, port, ctx.log(name), env={"SHADOWLANE_CONFIG": str(config)}, cwd=str(ROOT),
                      ready_path="/v2/health/ready")
    argv = [str(VENV / "shadowlane"), "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers)]
    return Server(name, argv, port, ctx.log(name), cwd=str(ROOT), ready_path="/v2/health/ready")


def _sl(name: str, title: str, *, baseline: str = "starlette-const", shadow: bool = False,
        challengers: bool = False, sink: str = "none", mode: str = "inprocess", workers: int = 1,
        server: str = "uvicorn", upstream: bool = False) -> Scenario:
    def build(ctx: Context) -> list[Server]:
        servers = []
        up_port = None
        if upstream:
            up = _upstream_server(ctx, f"{name}.upstream")
            servers.append(up)
            up_port = up.port
        cfg = deploy_config(ctx, name, shadow=shadow, challengers=challengers, sink=sink, mode=mode,
                            upstream_port=up_port)
        if mode == "decoupled":
            worker_argv = [str(VENV / "shadowlane"), "shadow-worker", "--config", str(cfg), "--log-level", "WARNING"]
            # In production decoupled workers run elsewhere; here they share the generator's CPU.
            servers.append(Server(f"{name}.shadow-worker", worker_argv, 0, ctx.log(f"{name}.worker"), cpu="1",
                                  cwd=str(ROOT)))
        servers.append(shadowlane_server(ctx, name, cfg, workers=workers, server=server))
        return servers

    if sink == "kafka":
        needs = _decoupled_missing if mode == "decoupled" else _kafka_missing
    elif server == "granian":
        needs = lambda ctx: _proxy_missing(ctx) or _granian_missing(ctx)  # noqa: E731
    else:
        needs = _proxy_missing
    sink_dir = (lambda ctx: ctx.work / name / "shadowlog") if sink == "file" else (lambda ctx: None)
    return Scenario(name, title, "shadowlane", build, baseline, needs, sink_dir, metrics=True)


# ------------------------------------------------------------------------------ the catalogue

def _simple(name: str, title: str, argv: Callable[[int], list[str]], *, baseline: str | None = None,
            needs: Callable[[Context], str | None] = lambda ctx: None) -> Scenario:
    def build(ctx: Context) -> list[Server]:
        port = free_port()
        return [Server(name, argv(port), port, ctx.log(name), cwd=str(ROOT))]
    return Scenario(name, title, "baseline", build, baseline, needs)


def _nginx(name: str, title: str, *, mirror: bool) -> Scenario:
    def build(ctx: Context) -> list[Server]:
        up = _upstream_server(ctx, f"{name}.upstream")
        servers = [up]
        mirror_port = None
        if mirror:
            m = _upstream_server(ctx, f"{name}.mirror", reply_204=True)
            servers.append(m)
            mirror_port = m.port
        port = free_port()
        argv = nginx.write_conf(ctx.work / name, port=port, upstream_port=up.port, mirror_port=mirror_port)
        servers.append(Server(name, argv, port, ctx.log(name)))
        return servers
    return Scenario(name, title, "baseline", build, "upstream-direct", lambda ctx: nginx.available())


def catalogue() -> list[Scenario]:
    """Every scenario, baselines first."""
    return [
        _simple("starlette-const", "bare starlette, constant JSON (uvicorn)",
                lambda p: uvicorn_argv("bench.servers.starlette_const:app", p, lifespan="on")),
        _simple("raw-asgi-const", "raw ASGI callable, constant JSON (uvicorn)",
                lambda p: uvicorn_argv("bench.servers.raw_const:app", p), baseline="starlette-const"),
        _simple("starlette-const-granian", "bare starlette, constant JSON (granian)",
                lambda p: granian_argv("bench.servers.starlette_const:app", p), baseline="starlette-const",
                needs=_granian_missing),
        _simple("upstream-direct", "client -> OIP model server (raw ASGI + onnxruntime)",
                lambda p: uvicorn_argv("bench.servers.oip_model:app", p), baseline="starlette-const"),
        _nginx("nginx-proxy", "nginx proxy_pass -> OIP model server", mirror=False),
        _nginx("nginx-mirror", "nginx proxy_pass + mirror (204 receiver running the model)", mirror=True),
        _sl("sl-champion", "shadowlane, champion only"),
        _sl("sl-shadow-file", "shadowlane + 100% in-process shadow, file sink", shadow=True, sink="file"),
        _sl("sl-shadow-kafka", "shadowlane + 100% in-process shadow, Kafka sink", shadow=True, sink="kafka"),
        _sl("sl-decoupled", "shadowlane, decoupled shadow (requests to Kafka; shadow-worker on the generator CPU)",
            shadow=True,
            sink="kafka", mode="decoupled"),
        _sl("sl-challengers", "shadowlane, 2 challengers x 10% + 100% shadow, file sink", shadow=True,
            challengers=True, sink="file"),
        _sl("sl-upstream", "shadowlane, upstream mode (champion over HTTP)", upstream=True,
            baseline="upstream-direct"),
        _sl("sl-shadow-file-2w", "shadowlane + 100% shadow, file sink, 2 workers (both on the server CPU)",
            shadow=True, sink="file", workers=2),
        _sl("sl-champion-granian", "shadowlane, champion only (granian)", server="granian",
            baseline="starlette-const-granian"),
        _sl("sl-shadow-file-granian", "shadowlane + 100% shadow, file sink (granian)", shadow=True, sink="file",
            server="granian", baseline="starlette-const-granian"),
    ]


def by_name(names: list[str]) -> list[Scenario]:
    cat = {s.name: s for s in catalogue()}
    unknown = [n for n in names if n not in cat]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {sorted(cat)}")
    return [cat[n] for n in names]


def has_wrk() -> str | None:
    return None if shutil.which("wrk") else "wrk is not installed (scripts/install_bench_tools.sh)"
