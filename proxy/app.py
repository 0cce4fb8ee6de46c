"""The proxy's ASGI application: the hot path for inference, starlette for everything else."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, AsyncIterator

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.config import DeploymentConfig
from proxy.deployment import Deployment, Endpoint, Variant
from proxy.hotpath import HotPath
from proxy.metrics import Metrics, _Callback as _Gauges, sink_metrics
from proxy.shadow import ShadowDispatcher
from proxy.sinks import build_sink

log = logging.getLogger("shadowlane.proxy")
_INFER_PREFIX = "/v2/models/"
_INFER_SUFFIX = "/infer"


class ProxyApp:
    """ASGI entry point. `build_app(cfg)` is the public constructor."""

    def __init__(self, cfg: DeploymentConfig, *, registry: CollectorRegistry | None = None):
        self.cfg = cfg
        self.metrics = Metrics(registry)
        self.deployment = Deployment(cfg, self.metrics,
                                     load_shadows=not (cfg.sink.type == "kafka" and cfg.sink.mode == "decoupled"))
        self.sink = build_sink(cfg)
        self.dispatcher = ShadowDispatcher(
            sink=self.sink, queue_size=cfg.shadow.queue_size, workers=cfg.shadow.workers,
            max_batch=cfg.shadow.max_batch, record_features=cfg.shadow.record_features,
            decoupled=cfg.sink.type == "kafka" and cfg.sink.mode == "decoupled",
            linger_s=cfg.shadow.linger_ms / 1000)
        self.hot = HotPath(self.deployment, self.dispatcher, cfg.server, self.metrics)
        self._multiprocess: bool = "PROMETHEUS_MULTIPROC_DIR" in os.environ
        gauges = lambda: sink_metrics(cfg.sink.type, self.sink.stats, self.sink.depth(),  # noqa: E731
                                      self.dispatcher.depth(), worker=str(os.getpid()) if self._multiprocess else None)
        self._local = CollectorRegistry()
        (self._local if self._multiprocess else self.metrics.registry).register(_Gauges(gauges))
        self.control = Starlette(routes=[
            Route("/v2/health/live", self.live),
            Route("/v2/health/ready", self.ready),
            Route("/v2", self.server_metadata),
            Route("/v2/models/{name}", self.model_metadata),
            Route("/v2/models/{name}/versions/{version}", self.model_metadata),
            Route("/v2/models/{name}/ready", self.model_ready),
            Route("/v2/models/{name}/versions/{version}/ready", self.model_ready),
            Route("/v2/models/{name}/infer", self.wrong_method),
            Route("/v2/models/{name}/versions/{version}/infer", self.wrong_method),
            Route("/invocations", self.wrong_method),
            Route("/ping", self.ping),
            Route("/health", self.ping),
            Route("/metrics", self.metrics_endpoint),
        ], lifespan=self._lifespan)
        # OIP clients expect {"error": ...} for every failure, including unknown paths.
        self.control.add_exception_handler(404, self._not_found)
        self.control.add_exception_handler(405, self._not_allowed)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path == "/invocations":
                return await self.hot.invocations(scope, receive, send)
            if path.startswith(_INFER_PREFIX) and path.endswith(_INFER_SUFFIX):
                parts = path[len(_INFER_PREFIX):-len(_INFER_SUFFIX)].split("/")
                if len(parts) == 1:
                    return await self.hot.infer(scope, receive, send, parts[0], None)
                if len(parts) == 3 and parts[1] == "versions":
                    return await self.hot.infer(scope, receive, send, parts[0], parts[2])
        await self.control(scope, receive, send)

    # ------------------------------------------------------------------------------ lifecycle
    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def start(self) -> None:
        await self.sink.start()
        await self.dispatcher.start()
        await self.deployment.start()
        log.info("shadowlane ready: endpoints %s", ", ".join(self.deployment.endpoints))

    async def stop(self, timeout_s: float = 5.0) -> None:
        await self.dispatcher.stop(timeout_s)
        await self.sink.stop(timeout_s)
        await self.deployment.close()

    # ------------------------------------------------------------------------------ control API
    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        ok = self.deployment.ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def ping(self, request: Request) -> Response:
        ok = self.deployment.ready()
        return Response("\n" if ok else "not ready\n", status_code=200 if ok else 503)

    async def server_metadata(self, request: Request) -> Response:
        from shadowlane import __version__

        return JSONResponse({"name": "shadowlane", "version": __version__, "extensions": []})

    def _lookup(self, request: Request) -> tuple[Endpoint, Variant] | Response:
        name = request.path_params["name"]
        ep = self.deployment.endpoints.get(name)
        if ep is None:
            return JSONResponse({"error": f"unknown model {name!r}; this server serves "
                                          f"{sorted(self.deployment.endpoints)}"}, status_code=404)
        version = request.path_params.get("version")
        if version is None:
            return ep, ep.champion
        variant = ep.by_version.get(version)
        if variant is None:
            return JSONResponse({"error": f"unknown version {version!r} of model {name!r}; served versions: "
                                          f"{sorted(ep.by_version)}"}, status_code=404)
        return ep, variant

    async def model_metadata(self, request: Request) -> Response:
        found = self._lookup(request)
        if isinstance(found, Response):
            return found
        ep, variant = found
        b = variant.backend
        platform = "onnxruntime_onnx" if type(b).__name__ == "OnnxBackend" else type(b).__name__.lower()
        versions = [str(b.version)] if "version" in request.path_params else sorted(ep.by_version, key=int)
        return JSONResponse({"name": ep.name, "versions": versions, "platform": platform, **b.metadata()})

    async def model_ready(self, request: Request) -> Response:
        found = self._lookup(request)
        if isinstance(found, Response):
            return found
        ep, variant = found
        ok = self.deployment.started and variant.backend.ready()
        return JSONResponse({"name": ep.name, "ready": ok}, status_code=200 if ok else 503)

    async def wrong_method(self, request: Request) -> Response:
        return JSONResponse({"error": f"{request.method} {request.url.path}: use POST"}, status_code=405)

    async def metrics_endpoint(self, request: Request) -> Response:
        if self._multiprocess:
            # Several uvicorn workers: counters and histograms summed over all of them from the
            # shared mmap files; the scrape-time gauges (queue, sink) are this worker's.
            agg = CollectorRegistry()
            multiprocess.MultiProcessCollector(agg)
            text = generate_latest(agg) + generate_latest(self._local)
        else:
            text = generate_latest(self.metrics.registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": f"no such path: {request.url.path}"}, status_code=404)

    async def _not_allowed(self, request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": f"method {request.method} not allowed on {request.url.path}"}, status_code=405)


def build_app(cfg: DeploymentConfig, *, registry: CollectorRegistry | None = None) -> ProxyApp:
    """Build the proxy for a validated deployment config (see proxy.config.load_config)."""
    return ProxyApp(cfg, registry=registry)
