"""The running deployment: backends loaded, routes resolved, metric children and response
headers precomputed — everything the hot path would otherwise work out per request."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram

from proxy.backends import Backend, BackendError, build_backend
from proxy.config import DeploymentConfig
from proxy.metrics import Metrics
from router import Arm, Assigner, MirrorRule

log = logging.getLogger("shadowlane.deployment")


def warmup_seconds(backend: Backend, calls: int = 25) -> float | None:
    """The 80th-percentile time of `calls` one-row predictions on zeros shaped from the model's
    metadata; None when the metadata cannot make a valid input or the model fails on it."""
    import time

    import numpy as np

    feeds = {}
    for spec in backend.inputs:
        if spec.datatype == "BYTES":
            return None
        shape = tuple(1 if d == -1 else d for d in spec.shape)
        feeds[spec.name] = np.zeros(shape, dtype=spec.dtype)
    times = []
    try:
        for _ in range(calls):
            t0 = time.perf_counter()
            backend.predict(feeds)
            times.append(time.perf_counter() - t0)
    except Exception:
        return None
    times.sort()
    return times[int(len(times) * 0.8)]


class UnavailableBackend(Backend):
    """Stands in for a shadow model that failed to load."""

    batchable = False

    def __init__(self, name: str, version: int, reason: str):
        super().__init__(name, version)
        self.reason = reason

    def predict(self, feeds):  # type: ignore[no-untyped-def]
        raise BackendError(f"shadow model {self.name} v{self.version} is unavailable: {self.reason}")

    def ready(self) -> bool:
        return False


@dataclass
class Variant:
    """A model that can answer clients on an endpoint: the champion or a challenger."""

    label: str  # "champion" or the challenger's model key
    backend: Backend
    headers: list[tuple[bytes, bytes]]  # x-shadowlane-* response headers, built once
    ok_counter: Counter  # cached child for code=200
    duration: Histogram  # cached child


@dataclass
class ShadowTarget:
    label: str  # the shadow's model key
    backend: Backend
    timeout_s: float
    enqueued: Counter
    completed: Counter
    failed_error: Counter
    failed_timeout: Counter
    dropped_full: Counter
    duration: Histogram
    divergence: Histogram
    agree: Counter
    disagree: Counter
    executor: str = "thread"  # configured: auto | inline | thread
    inline_max_s: float = 0.0005
    inline: bool = False  # decided at start (see Deployment.place_shadows)
    overruns: int = 0  # consecutive inline calls past the timeout


@dataclass
class Endpoint:
    name: str
    variants: list[Variant]  # [0] is the champion
    shadows: list[ShadowTarget]
    assigner: Assigner
    feature_names: tuple[str, ...] | None
    by_version: dict[str, Variant] = field(default_factory=dict)

    @property
    def champion(self) -> Variant:
        return self.variants[0]


class Deployment:
    def __init__(self, cfg: DeploymentConfig, metrics: Metrics, *, load_shadows: bool = True):
        self.cfg = cfg
        self.metrics = metrics
        self.backends: dict[str, Backend] = {}
        self.endpoints: dict[str, Endpoint] = {}
        serving = {ep.champion for ep in cfg.endpoints.values()}
        serving |= {c.model for ep in cfg.endpoints.values() for c in ep.challengers}
        shadow_only = {s.model for ep in cfg.endpoints.values() for s in ep.shadows} - serving
        self.unavailable: dict[str, str] = {}
        for key in sorted(serving):  # a model that answers clients must load, or we do not start
            self.backends[key] = build_backend(cfg.models[key])
        for key in sorted(shadow_only):
            if not load_shadows:  # decoupled mode: shadow-workers load them, not the proxy
                m = cfg.models[key]
                self.backends[key] = UnavailableBackend(m.name, m.version, "runs in shadow-worker (decoupled mode)")
                continue
            # A missing or broken shadow must never keep the champion from serving: it becomes a
            # backend that fails every call, so each mirrored request still leaves a record.
            try:
                self.backends[key] = build_backend(cfg.models[key])
            except Exception as err:
                m = cfg.models[key]
                log.warning("shadow model %s v%s unavailable, recording failures: %s", m.name, m.version, err)
                self.unavailable[key] = str(err)
                self.backends[key] = UnavailableBackend(m.name, m.version, str(err))
        for name, ep in cfg.endpoints.items():
            self.endpoints[name] = self._endpoint(name, ep)
        self.started = False

    def _variant(self, endpoint: str, label: str, key: str) -> Variant:
        b = self.backends[key]
        m = self.cfg.models[key]
        headers = [
            (b"x-shadowlane-model", m.name.encode()),
            (b"x-shadowlane-version", str(m.version).encode()),
            (b"x-shadowlane-variant", label.encode()),
        ]
        return Variant(label, b, headers,
                       self.metrics.requests.labels(endpoint, label, "200"),
                       self.metrics.request_duration.labels(endpoint, label))

    def _endpoint(self, name: str, ep) -> Endpoint:  # type: ignore[no-untyped-def]
        variants = [self._variant(name, "champion", ep.champion)]
        variants += [self._variant(name, c.model, c.model) for c in ep.challengers]
        mm = self.metrics
        shadows = [
            ShadowTarget(
                s.model, self.backends[s.model], s.timeout_ms / 1000,
                mm.shadow_enqueued.labels(name, s.model), mm.shadow_completed.labels(name, s.model),
                mm.shadow_failed.labels(name, s.model, "error"), mm.shadow_failed.labels(name, s.model, "timeout"),
                mm.shadow_dropped.labels(name, s.model, "queue_full"), mm.shadow_duration.labels(name, s.model),
                mm.divergence.labels(name, s.model),
                mm.agreement.labels(name, s.model, "true"), mm.agreement.labels(name, s.model, "false"),
                executor=s.executor, inline_max_s=s.inline_max_ms / 1000,
            )
            for s in ep.shadows
        ]
        assigner = Assigner(
            ep.salt or name,
            [Arm(c.model, c.fraction) for c in ep.challengers],
            [MirrorRule(s.model, s.fraction, s.salt or f"{name}/shadow/{s.model}") for s in ep.shadows],
        )
        champion_cfg = self.cfg.models[ep.champion]
        endpoint = Endpoint(name, variants, shadows, assigner,
                            tuple(champion_cfg.feature_names) if champion_cfg.feature_names else None)
        for v in variants:
            endpoint.by_version.setdefault(str(v.backend.version), v)
        return endpoint

    async def start(self) -> None:
        await asyncio.gather(*(b.start() for b in self.backends.values()))
        self.place_shadows()
        self.started = True

    def place_shadows(self) -> None:
        """Decide, once, which in-process shadows run inline on the loop and which in a thread.

        A thread costs a hand-off per batch and, on a busy core, a GIL convoy that can hold the
        event loop for a whole switch interval (5 ms); a small ONNX model costs tens of µs
        inline. So `auto` times a few warm-up calls and runs the model inline when they are fast.
        """
        from proxy.backends.onnx import OnnxBackend

        for ep in self.endpoints.values():
            for sh in ep.shadows:
                b = sh.backend
                if not b.sync or isinstance(b, UnavailableBackend):
                    sh.inline = False
                elif sh.executor == "inline":
                    sh.inline = True
                elif sh.executor == "auto" and isinstance(b, OnnxBackend):
                    cost = warmup_seconds(b)
                    sh.inline = cost is not None and cost <= sh.inline_max_s
                    log.info("shadow %s on %s: warm-up %.0f µs -> %s", sh.label, ep.name,
                             (cost or 0) * 1e6, "inline" if sh.inline else "thread")
                else:
                    sh.inline = False

    async def close(self) -> None:
        self.started = False
        await asyncio.gather(*(b.close() for b in self.backends.values()), return_exceptions=True)

    def ready(self) -> bool:
        return self.started and all(ep.champion.backend.ready() for ep in self.endpoints.values())
