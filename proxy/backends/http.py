"""A model on a remote server speaking the Open Inference Protocol or MLflow's scoring protocol.

Every failure becomes a `BackendError` naming the upstream, with the status the proxy answers a
client with when this backend is the champion:

| what happened upstream                               | status |
|------------------------------------------------------|--------|
| refused / unreachable / connection broke / bad answer | 502    |
| no connection or no whole answer in time             | 504    |
| circuit breaker open (too many failures in a row)    | 503    |
| 4xx about the request (400, 413, 415, 422)           | 400, upstream's own message |
| 401/403/404/405 (the proxy's config is wrong)        | 502    |
| 429 (overloaded)                                     | 503    |
| 5xx                                                  | 502 (504 when upstream says 504) |
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from proxy.backends.base import Backend, BackendError, Feeds, Outputs
from proxy.backends.breaker import CircuitBreaker
from proxy.codecs_upstream import (
    UpstreamProtocolError, decode_mlflow_response, decode_oip_metadata, decode_oip_response,
    encode_mlflow_request, encode_oip_request, error_message, infer_specs, specs_from_json,
)
from proxy.upstream_client import (
    UpstreamClient, UpstreamConnectError, UpstreamConnectTimeout, UpstreamDisconnected,
)

if TYPE_CHECKING:
    from proxy.config import HttpBackend as HttpBackendConfig

log = logging.getLogger("shadowlane.upstream")

# Headers a client's request may carry through to the upstream (docs/upstreams.md). Anything
# else (cookies, authorization, host, hop-by-hop headers) stays at the proxy.
PASS_THROUGH_HEADERS = frozenset({"x-request-id", "traceparent", "tracestate", "baggage"})
_CLIENT_FAULT = frozenset({400, 413, 415, 422})
_JSON = ("content-type", "application/json")
HEALTH_INTERVAL_S = 2.0


class HttpBackend(Backend):
    """One pinned model version served by a remote OIP or MLflow server."""

    sync = False

    def __init__(self, name: str, version: int, cfg: "HttpBackendConfig", *,
                 feature_names: Sequence[str] | None = None):
        super().__init__(name, version)
        self.cfg = cfg
        self.url = cfg.url.rstrip("/")
        self.protocol = cfg.protocol
        self.columns = list(feature_names) if feature_names else None
        self.breaker = CircuitBreaker(cfg.breaker_failures, cfg.breaker_cooldown_ms / 1000)
        self._client: UpstreamClient | None = None
        self._healthy = False
        self._health_task: asyncio.Task[None] | None = None
        self.failures_total = 0  # upstream faults seen (breaker-open rejections not included)
        self.rejected_total = 0  # calls refused by the open breaker
        self.inputs = specs_from_json(cfg.inputs) if cfg.inputs else ()
        self.outputs = specs_from_json(cfg.outputs) if cfg.outputs else ()
        self._metadata_pinned = bool(cfg.inputs or cfg.outputs)
        remote = cfg.remote_model or name
        base = f"/v2/models/{remote}" + (f"/versions/{cfg.remote_version}" if cfg.remote_version else "")
        if self.protocol == "oip":
            self._infer_path, self._meta_path, self._health_path = base + "/infer", base, base + "/ready"
        else:
            self._infer_path, self._meta_path, self._health_path = "/invocations", None, "/ping"  # type: ignore[assignment]
        self._set_batchable()

    # ── lifecycle ────────────────────────────────────────────────────────────────────────────

    async def start(self) -> None:
        """Open the pool, fetch OIP metadata and check health once, then keep checking in the
        background. An unreachable upstream does not stop the proxy from starting: the backend
        reports not ready until the upstream answers. An upstream that does not know the model
        is a config error and raises."""
        if self._client is None:
            self._client = UpstreamClient(
                self.url, max_connections=self.cfg.max_connections,
                connect_timeout_s=self.cfg.connect_timeout_ms / 1000, timeout_s=self.cfg.timeout_ms / 1000)
        await self._probe(raise_config_errors=True)
        if self._health_task is None:
            self._health_task = asyncio.create_task(self._health_loop(), name=f"health:{self.name}")

    async def close(self) -> None:
        task, self._health_task = self._health_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        client, self._client = self._client, None  # a later start() opens a fresh pool
        if client is not None:
            await client.close()
        self._healthy = False

    def ready(self) -> bool:
        """The upstream answered its last health check and the breaker is not open."""
        return self._healthy and self.breaker.state != "open"

    # ── inference ────────────────────────────────────────────────────────────────────────────

    async def infer(self, feeds: Feeds, *, headers: Mapping[str, str] | Iterable[tuple[bytes, bytes]] | None = None,
                    request_id: str | None = None) -> Outputs:
        """Run the model upstream.

        `headers`: the client's request headers, as a mapping with lower-case names or the ASGI
        scope's `[(name, value), ...]` bytes pairs; only `PASS_THROUGH_HEADERS` are forwarded.
        `request_id` (e.g. one the proxy generated) is sent as `x-request-id` and as the OIP `id`.
        """
        if self._client is None:
            raise BackendError(f"upstream {self.name} at {self.url} is not started", status=503, upstream=self.url)
        fwd = [_JSON]
        if headers:
            pairs: Iterable[tuple[Any, Any]] = headers.items() if isinstance(headers, Mapping) else headers
            for raw_k, raw_v in pairs:
                k = raw_k.decode("latin-1") if isinstance(raw_k, bytes) else raw_k
                v = raw_v.decode("latin-1") if isinstance(raw_v, bytes) else raw_v
                k = k.lower()
                if k in PASS_THROUGH_HEADERS and "\r" not in v and "\n" not in v:
                    if k == "x-request-id":
                        request_id = request_id or v
                        continue
                    fwd.append((k, v))
        if request_id:
            fwd.append(("x-request-id", request_id))
        if self.protocol == "oip":
            body = encode_oip_request(feeds, request_id=request_id)
        else:
            body = encode_mlflow_request(feeds, columns=self.columns)
        # Only now, with nothing left that could raise before the call: in half-open, allow()
        # lets one trial through, and a trial that never reports back would keep it shut.
        if not self.breaker.allow():
            self.rejected_total += 1
            raise BackendError(
                f"upstream {self.name} at {self.url} is failing: circuit breaker open after "
                f"{self.breaker.consecutive_failures} consecutive failures, next try in "
                f"{self.breaker.retry_after_s():.1f} s", status=503, upstream=self.url)
        try:
            status, answer = await self._client.request("POST", self._infer_path, body, fwd)
        except asyncio.CancelledError:
            # The caller gave up first (a shadow's own timeout is usually shorter than the
            # backend's): a stalling upstream must still trip the breaker.
            self.failures_total += 1
            self.breaker.record_failure()
            raise
        except Exception as err:
            raise self._failure(self._transport_error(err)) from None
        if status != 200:
            raise self._status_error(status, answer)
        try:
            out = decode_oip_response(answer) if self.protocol == "oip" else decode_mlflow_response(answer, self.outputs)
        except (UpstreamProtocolError, ValueError, TypeError, KeyError, AttributeError) as err:
            raise self._failure(BackendError(f"upstream {self.name} at {self.url} answered badly: {err}",
                                             status=502, upstream=self.url)) from None
        self.breaker.record_success()
        self._healthy = True
        if not self.outputs:
            self._learn(feeds, out)
        return out

    # ── internals ────────────────────────────────────────────────────────────────────────────

    def _failure(self, err: BackendError) -> BackendError:
        self.failures_total += 1
        self.breaker.record_failure()
        if self.breaker.state == "open":
            self._healthy = False
        return err

    def _transport_error(self, err: Exception) -> BackendError:
        where = f"upstream {self.name} at {self.url}"
        if isinstance(err, UpstreamConnectError):
            return BackendError(f"{where} {err.reason}", status=502, upstream=self.url)
        if isinstance(err, UpstreamConnectTimeout):
            return BackendError(f"{where}: no connection within {self.cfg.connect_timeout_ms:g} ms",
                                status=504, upstream=self.url)
        if isinstance(err, TimeoutError):
            return BackendError(f"{where} did not answer within {self.cfg.timeout_ms:g} ms",
                                status=504, upstream=self.url)
        if isinstance(err, UpstreamDisconnected):
            return BackendError(f"{where} broke the connection: {err}", status=502, upstream=self.url)
        return BackendError(f"{where} failed: {type(err).__name__}: {err}", status=502, upstream=self.url)

    def _status_error(self, status: int, body: bytes) -> BackendError:
        msg = error_message(body)
        where = f"upstream {self.name} at {self.url}"
        if status in _CLIENT_FAULT:
            # The server is alive and says the input is wrong: the client's fault, not a failure.
            self.breaker.record_success()
            return BackendError(f"{where} rejected the request: {msg}", status=400, upstream=self.url)
        if status == 429:
            return self._failure(BackendError(f"{where} is overloaded (429): {msg}", status=503, upstream=self.url))
        if 400 <= status < 500:
            self.breaker.record_success()  # alive, but our config (model name, auth) is wrong
            return BackendError(f"{where} answered {status} for {self._infer_path}: {msg}",
                                status=502, upstream=self.url)
        return self._failure(BackendError(f"{where} answered {status}: {msg}",
                                          status=504 if status == 504 else 502, upstream=self.url))

    async def _probe(self, *, raise_config_errors: bool = False) -> None:
        assert self._client is not None
        try:
            if self._meta_path is not None and not self._metadata_pinned and not self.inputs:
                status, body = await self._client.request("GET", self._meta_path)
                if status == 200:
                    self.inputs, self.outputs = decode_oip_metadata(body)
                    self._set_batchable()
                elif status == 404 and raise_config_errors:
                    raise BackendError(f"upstream {self.url} does not serve model {self._meta_path}: "
                                       f"{error_message(body)}", status=502, upstream=self.url)
            status, _ = await self._client.request("GET", self._health_path)
            healthy = status == 200
        except BackendError:
            raise
        except (UpstreamProtocolError, TimeoutError, ConnectionError, OSError) as err:
            if self._healthy:
                log.warning("upstream %s at %s is not healthy: %s", self.name, self.url, err)
            healthy = False
        if healthy and not self._healthy:
            log.info("upstream %s at %s is healthy", self.name, self.url)
        self._healthy = healthy

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_INTERVAL_S)
            try:
                await self._probe()
            except BackendError as err:
                log.warning("%s", err)
                self._healthy = False
            except Exception:  # keep checking: a dead loop would freeze readiness as it was
                log.exception("health check of upstream %s at %s failed", self.name, self.url)
                self._healthy = False

    def _learn(self, feeds: Feeds, out: Mapping[str, np.ndarray]) -> None:
        """MLflow serves no metadata: take the shapes of the first good answer."""
        self.inputs = self.inputs or infer_specs(feeds)
        self.outputs = infer_specs(out)
        self._set_batchable()

    def _set_batchable(self) -> None:
        # Rows of several requests may be sent as one call only when every input has a free
        # batch dimension (known from metadata, the config override, or a first answer).
        self.batchable = bool(self.inputs) and all(len(t.shape) >= 1 and t.shape[0] == -1 for t in self.inputs)
