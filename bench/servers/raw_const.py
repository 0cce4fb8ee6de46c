"""Baseline: a raw ASGI callable returning a constant JSON (the ASGI server's own floor).

`app` answers 200 with a body; `app_204` answers 204 without one (an nginx `mirror` receiver
must not send a body, or nginx opens a new connection per mirrored request).
"""

from typing import Any, Awaitable, Callable

from bench.servers.starlette_const import BODY

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def _drain(receive: Receive) -> None:
    more = True
    while more:
        more = (await receive()).get("more_body", False)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await _drain(receive)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": BODY})


async def app_204(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await _drain(receive)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
