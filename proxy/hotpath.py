"""The hot path: the one place where an inference request turns into a response.

    headers scan → body (size-limited) → JSON → route (router/) → decode → champion → encode → send
    then, after the response is out: submit the shadow job (a deque append).

Raw ASGI on purpose: starlette's Request/Response objects and routing cost ~20 µs a request
(docs/performance.md); control endpoints (health, metadata, metrics) use starlette.
Everything per-deployment (metric children, header bytes, routes) was resolved at start.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Any
from urllib.parse import parse_qsl

from proxy.backends import BackendError
from proxy.codec import decode_mlflow, decode_oip, encode_mlflow, encode_oip, parse_json, requested_outputs
from proxy.config import ServerConfig
from proxy.deployment import Deployment, Endpoint
from proxy.errors import ProxyError, mlflow_error_body, oip_error_body
from proxy.metrics import Metrics
from proxy.shadow import ShadowDispatcher, ShadowJob

log = logging.getLogger("shadowlane.proxy")

_JSON = (b"content-type", b"application/json")
_CONTENT_LENGTH = b"content-length"
_CONTENT_TYPE = b"content-type"


class HotPath:
    def __init__(self, deployment: Deployment, dispatcher: ShadowDispatcher, server: ServerConfig,
                 metrics: Metrics):
        self.endpoints = deployment.endpoints
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.max_body = server.max_body_bytes
        self.reject_missing_unit = server.on_missing_unit_id == "reject"
        self.unit_param = server.unit_id_param
        self._unit_header = server.unit_id_header.encode()
        self._rid_header = server.request_id_header.encode()
        self._attr_headers = {h.lower().encode(): attr for attr, h in server.attribute_headers.items()}
        self._rid_prefix = os.urandom(4).hex() + "-"  # unique across processes without uuid4's cost
        self._rid_counter = itertools.count(1)
        inv = server.invocations_endpoint or (next(iter(self.endpoints)) if len(self.endpoints) == 1 else None)
        self.invocations_endpoint = inv

    # ---------------------------------------------------------------------------- ASGI entries
    async def infer(self, scope: dict[str, Any], receive: Any, send: Any, name: str, version: str | None) -> None:
        await self._serve(scope, receive, send, "oip", name, version)

    async def invocations(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self._serve(scope, receive, send, "mlflow", self.invocations_endpoint, None)

    # ---------------------------------------------------------------------------- the request
    async def _serve(self, scope: dict[str, Any], receive: Any, send: Any, protocol: str,
                     name: str | None, version: str | None) -> None:
        t0 = time.perf_counter()
        unit_id = request_id = content_type = None
        length = -1
        binary = False
        attrs: dict[str, str] = {}
        for k, v in scope["headers"]:
            if k == self._unit_header:
                unit_id = v.decode("latin-1")
            elif k == self._rid_header:
                request_id = v.decode("latin-1")
            elif k == _CONTENT_LENGTH:
                length = int(v) if v.isdigit() else -1
            elif k == _CONTENT_TYPE:
                content_type = v
            elif k in self._attr_headers:
                attrs[self._attr_headers[k]] = v.decode("latin-1")
            elif k == b"inference-header-content-length":  # OIP binary extension (tritonclient's default)
                binary = True
        if request_id is None:
            request_id = f"{self._rid_prefix}{next(self._rid_counter):x}"
        endpoint: Endpoint | None = None
        try:
            if length > self.max_body:
                raise ProxyError(413, f"request body of {length} bytes exceeds the limit of {self.max_body} "
                                      "bytes (server.max_body_bytes)")
            body = await self._read_body(receive)
            if binary:
                raise ProxyError(400, "the binary tensor extension is not supported; send JSON 'data' "
                                      "(tritonclient: binary_data=False)")
            if protocol == "mlflow" and content_type is not None and not content_type.startswith(b"application/json"):
                raise ProxyError(415, f"content type {content_type.decode('latin-1')!r} is not supported; "
                                      "send application/json")
            if name is None:
                raise ProxyError(404, "no endpoint serves /invocations: set server.invocations_endpoint")
            endpoint = self.endpoints.get(name)
            if endpoint is None:
                raise ProxyError(404, f"unknown model {name!r}; this server serves {sorted(self.endpoints)}")
            req = parse_json(body)
            if unit_id is None:
                unit_id = self._unit_from_request(scope, req)
                if unit_id is None and self.reject_missing_unit:
                    raise ProxyError(400, f"missing unit id: send header {self._unit_header.decode()!r} "
                                          f"or parameter {self.unit_param!r}")
            if version is None:
                arm, mirrors = endpoint.assigner.assign(unit_id, request_id)
                variant = endpoint.variants[arm]
            else:
                pinned = endpoint.by_version.get(version)
                if pinned is None:
                    raise ProxyError(404, f"unknown version {version!r} of model {name!r}; "
                                          f"served versions: {sorted(endpoint.by_version)}")
                variant = pinned
                arm, mirrors = (0, endpoint.assigner.mirrors(unit_id or request_id)) if variant is endpoint.champion else (1, ())
            backend = variant.backend
            if protocol == "oip":
                feeds = decode_oip(req, backend.inputs)
                only = requested_outputs(req, [o.name for o in backend.outputs]) if "outputs" in req else None
            else:
                feeds = decode_mlflow(req, backend.inputs, endpoint.feature_names)
            tc = time.perf_counter()
            if backend.sync:
                outputs = backend.predict(feeds)
            else:  # remote: trace headers and the request id travel on (docs/upstreams.md)
                outputs = await backend.infer(feeds, headers=scope["headers"], request_id=request_id)
            champion_s = time.perf_counter() - tc
            if protocol == "oip":
                out = encode_oip(name, str(backend.version), req.get("id"), outputs, only)
            else:
                out = encode_mlflow(outputs)
        except ProxyError as err:
            await self._error(send, protocol, err.status, err.message, request_id, endpoint, None)
            return
        except BackendError as err:
            await self._error(send, protocol, err.status, str(err), request_id, endpoint, variant)
            return
        except Exception as err:  # a bug must still answer in the protocol's format, and be logged
            log.exception("request %s failed", request_id)
            await self._error(send, protocol, 500, f"internal error: {type(err).__name__}: {err}",
                              request_id, endpoint, None)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            _JSON, (_CONTENT_LENGTH, str(len(out)).encode()), (b"x-request-id", request_id.encode()),
            *variant.headers]})
        await send({"type": "http.response.body", "body": out})
        variant.ok_counter.inc()
        variant.duration.observe(time.perf_counter() - t0)
        # Shadow after the champion's last body chunk: client latency never includes it.
        if mirrors and arm == 0:
            rows = next(iter(feeds.values())).shape[0] if feeds else 0
            self.dispatcher.submit(ShadowJob(endpoint, mirrors, feeds, int(rows) if rows else 1, variant, outputs,
                                             champion_s, request_id, unit_id, protocol, attrs, time.time()))

    async def _read_body(self, receive: Any) -> bytes:
        msg = await receive()
        body = msg.get("body", b"")
        if not msg.get("more_body", False):
            if len(body) > self.max_body:
                raise ProxyError(413, f"request body exceeds the limit of {self.max_body} bytes (server.max_body_bytes)")
            return body
        chunks = [body]
        size = len(body)
        while msg.get("more_body", False):
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise ProxyError(400, "client disconnected before sending the whole body")
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise ProxyError(413, f"request body exceeds the limit of {self.max_body} bytes (server.max_body_bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    def _unit_from_request(self, scope: dict[str, Any], req: Any) -> str | None:
        qs = scope.get("query_string")
        if qs:
            for k, v in parse_qsl(qs.decode("latin-1")):
                if k == self.unit_param:
                    return v
        if isinstance(req, dict):
            params = req.get("parameters")
            if isinstance(params, dict) and params.get(self.unit_param) is not None:
                return str(params[self.unit_param])
        return None

    async def _error(self, send: Any, protocol: str, status: int, message: str, request_id: str,
                     endpoint: Endpoint | None, variant: Any) -> None:
        body = oip_error_body(message) if protocol == "oip" else mlflow_error_body(status, message)
        headers = [_JSON, (_CONTENT_LENGTH, str(len(body)).encode()), (b"x-request-id", request_id.encode())]
        if variant is not None:
            headers += variant.headers
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        # Bounded label values: unknown endpoint names are folded into one series.
        ep = endpoint.name if endpoint is not None else "_unknown"
        self.metrics.requests.labels(ep, variant.label if variant is not None else "_none", str(status)).inc()
