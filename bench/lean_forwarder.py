"""A floor for any Python proxy: the leanest forwarder (asyncio.Protocol + httptools +
proxy/upstream_client.py), no ASGI, no parsing of the body, no routing, no shadows.

bench/upstream_overhead.py --lean adds it as a target, to split shadowlane's added latency into
what Python forwarding costs at all and what the ASGI server and the hot path add on top.
Usage: python bench/lean_forwarder.py PORT UPSTREAM_URL
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httptools
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from proxy.upstream_client import UpstreamClient  # noqa: E402

JSON = [("content-type", "application/json")]
_tasks: set[asyncio.Task[None]] = set()


class Forwarder(asyncio.Protocol):
    def __init__(self, client: UpstreamClient):
        self.client = client
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        task = asyncio.get_running_loop().create_task(self.forward(self.url.decode(), body))
        _tasks.add(task)  # the loop holds tasks weakly: keep each until it is done
        task.add_done_callback(_tasks.discard)

    async def forward(self, url: str, body: bytes) -> None:
        try:
            status, answer = await self.client.request("POST", url, body, JSON)
        except Exception as err:  # answer, or the client would wait for ever
            status, answer = 502, b'{"error": "%s"}' % type(err).__name__.encode()
        self.transport.write(b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                             % (status, len(answer), answer))


async def main(port: int, upstream: str) -> None:
    client = UpstreamClient(upstream, max_connections=64)
    server = await asyncio.get_running_loop().create_server(lambda: Forwarder(client), "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2]))
