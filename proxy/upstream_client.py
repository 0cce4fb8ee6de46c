"""A lean pooled keep-alive HTTP/1.1 client for calling model servers from the event loop.

Chosen by measurement over httpx and aiohttp (bench/http_clients.py, docs/upstreams.md): against
the same local upstream it did ~2x aiohttp's requests/s at ~1/4 of its CPU per request, and httpx
was an order of magnitude slower still. It does only what the proxy needs: one request in flight
per connection (no pipelining), a bounded pool per upstream, Content-Length and chunked answers
(httptools parses), a total deadline over queueing + connect + answer, and http or https.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Iterable
from urllib.parse import urlsplit

import httptools

MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class UpstreamConnectError(ConnectionError):
    """The upstream refused or could not be reached (nothing was sent); `reason` says which."""

    reason = "refused connection"


class UpstreamConnectTimeout(TimeoutError):
    """Connecting to the upstream took longer than its connect timeout."""


class UpstreamDisconnected(ConnectionError):
    """The connection broke before a whole answer arrived."""


class _Connection(asyncio.Protocol):
    __slots__ = ("parser", "transport", "waiter", "chunks", "size", "closed", "used", "got_bytes", "keep")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.closed = False
        self.used = False  # served a request before: may have been closed by the server meanwhile
        self.got_bytes = False
        self.keep = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(UpstreamDisconnected(f"unreadable HTTP answer: {err}"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(UpstreamDisconnected("connection closed before the answer was complete"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_RESPONSE_BYTES:
            self._fail(UpstreamDisconnected(f"answer larger than {MAX_RESPONSE_BYTES} bytes"))
            self.abort()
            return
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.keep = self.parser.should_keep_alive()
        body = b"".join(self.chunks)
        self.chunks, self.size = [], 0
        w, self.waiter = self.waiter, None
        if w is not None and not w.done():
            w.set_result((self.parser.get_status_code(), body))

    def _fail(self, err: Exception) -> None:
        w, self.waiter = self.waiter, None
        if w is not None and not w.done():
            w.set_exception(err)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class UpstreamClient:
    """A connection pool to one upstream `base_url` (scheme://host:port[/prefix]).

    `request` raises `UpstreamConnectError`, `UpstreamConnectTimeout`, `TimeoutError` (no whole
    answer within `timeout_s`, measured from the call, so time queued for a connection counts)
    or `UpstreamDisconnected`; any HTTP status is returned, not raised.
    """

    def __init__(self, base_url: str, *, max_connections: int = 64, connect_timeout_s: float = 1.0,
                 timeout_s: float = 5.0):
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"upstream url must be http(s)://host[:port][/prefix] (got {base_url!r})")
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.prefix = u.path.rstrip("/")
        self._ssl = ssl.create_default_context() if u.scheme == "https" else None
        host_header = self.host if u.port is None else f"{self.host}:{u.port}"
        self._head_tail = f"\r\nhost: {host_header}\r\n".encode("latin-1")
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._closed = False

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: Iterable[tuple[str, str]] = (), *, timeout_s: float | None = None) -> tuple[int, bytes]:
        """Send one request, return `(status, body)`."""
        if self._closed:
            raise UpstreamDisconnected("client is closed")
        head = bytearray(f"{method} {self.prefix}{path} HTTP/1.1".encode("latin-1"))
        head += self._head_tail
        for k, v in headers:
            head += f"{k}: {v}\r\n".encode("latin-1", "replace")
        if body or method in ("POST", "PUT", "PATCH"):
            head += b"content-length: %d\r\n" % len(body)
        head += b"\r\n"
        async with asyncio.timeout(self.timeout_s if timeout_s is None else timeout_s):
            async with self._slots:
                try:
                    return await self._send(bytes(head) + body, reuse=True)
                except UpstreamDisconnected as err:
                    # Closed before any answer byte: almost always an idle keep-alive connection
                    # the server had closed, which nothing reached, so one retry on a fresh one.
                    # (A server that read the request and died silently sees it twice.)
                    if getattr(err, "stale", False):
                        return await self._send(bytes(head) + body, reuse=False)
                    raise

    async def _send(self, data: bytes, *, reuse: bool) -> tuple[int, bytes]:
        conn = self._take_idle() if reuse else None
        reused = conn is not None
        if conn is None:
            conn = await self._connect()
        loop = asyncio.get_running_loop()
        conn.waiter = waiter = loop.create_future()
        conn.got_bytes = False
        try:
            conn.transport.write(data)  # type: ignore[union-attr]
            status, body = await waiter
        except UpstreamDisconnected as err:
            conn.abort()
            if reused and not conn.got_bytes:
                err.stale = True  # type: ignore[attr-defined]
            raise
        except BaseException:
            conn.abort()  # cancelled or timed out mid-answer: the connection's state is unknown
            raise
        conn.used = True
        if conn.keep and not conn.closed and not self._closed:
            self._idle.append(conn)
        else:
            conn.abort()
        return status, body

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()  # LIFO: the warmest connection, the others may time out
            if not conn.closed:
                return conn
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(
                    _Connection, self.host, self.port, ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None)
        except TimeoutError:
            raise UpstreamConnectTimeout(
                f"no connection to {self.host}:{self.port} within {self.connect_timeout_s * 1000:g} ms") from None
        except OSError as err:  # refused, or a name that does not resolve, no route, ...
            reason = ("refused connection" if isinstance(err, ConnectionRefusedError)
                      else f"is unreachable ({err.strerror or err})")
            exc = UpstreamConnectError(f"{self.host}:{self.port} {reason}")
            exc.reason = reason
            raise exc from None
        return conn

    async def close(self) -> None:
        """Close idle connections; in-flight ones close when their answer arrives. Idempotent."""
        self._closed = True
        while self._idle:
            self._idle.pop().abort()
