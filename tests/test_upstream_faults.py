"""HttpBackend against real loopback servers that fail: down, stalling, 5xx until the breaker
opens, then recovering; plus error pass-through, headers, pooling and the breaker's states."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest

from proxy.backends.base import BackendError
from proxy.backends.breaker import CircuitBreaker
from proxy.backends.http import HttpBackend
from tests.fixtures.upstreams import OIP_CREDIT_METADATA, Received, http_backend_config, oip_answer, oip_server

X = np.arange(20, dtype=np.float32).reshape(2, 10)


async def stall(req: Received) -> tuple[int, bytes]:
    """An infer handler that never answers."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def started(url: str, **kw) -> HttpBackend:
    b = HttpBackend("credit", 1, http_backend_config(url, **kw))
    await asyncio.wait_for(b.start(), 10)
    return b


async def test_oip_roundtrip_metadata_and_keepalive(loopback_http):
    srv = await loopback_http(oip_server())
    b = await started(srv.url)
    try:
        assert b.ready()
        assert [t.name for t in b.inputs] == ["features"] and b.inputs[0].shape == (-1, 10)
        assert [t.name for t in b.outputs] == ["label", "probabilities"]
        assert b.batchable and b.sync is False
        for _ in range(5):
            out = await b.infer({"features": X})
        assert out["label"].dtype == np.int64 and out["label"].tolist() == [1, 1]
        assert out["probabilities"].dtype == np.float32 and out["probabilities"].shape == (2, 2)
        sent = orjson.loads(srv.received[-1].body)
        assert sent["inputs"][0] == {"name": "features", "shape": [2, 10], "datatype": "FP32",
                                     "data": X.ravel().tolist()}
        assert srv.connections == 1  # metadata, health and five infers on one keep-alive connection
    finally:
        await b.close()
    await b.start()  # a closed backend starts again with a fresh pool
    try:
        assert (await b.infer({"features": X}))["label"].tolist() == [1, 1] and srv.connections == 2
    finally:
        await b.close()


async def test_upstream_down_is_502_naming_it(down_url):
    b = await started(down_url)
    try:
        assert not b.ready()
        with pytest.raises(BackendError) as e:
            await asyncio.wait_for(b.infer({"features": X}), 5)
        assert e.value.status == 502 and e.value.upstream == down_url
        assert "refused connection" in str(e.value) and down_url in str(e.value)
    finally:
        await b.close()


async def test_stalled_upstream_times_out_with_504(loopback_http):
    srv = await loopback_http(oip_server(stall))
    b = await started(srv.url, timeout_ms=200)
    try:
        with pytest.raises(BackendError) as e:
            await asyncio.wait_for(b.infer({"features": X}), 5)  # the backend's own deadline, not this one
        assert e.value.status == 504 and "did not answer within 200 ms" in str(e.value)
        assert e.value.upstream == srv.url
    finally:
        await b.close()


async def test_callers_giving_up_on_a_stall_trip_the_breaker(loopback_http):
    srv = await loopback_http(oip_server(stall))
    b = await started(srv.url, timeout_ms=5000, breaker_failures=2)
    try:
        for _ in range(2):  # a shadow worker's own, shorter timeout cancels the call
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(b.infer({"features": X}), 0.1)
        with pytest.raises(BackendError) as e:
            await asyncio.wait_for(b.infer({"features": X}), 1)
        assert e.value.status == 503 and b.failures_total == 2
    finally:
        await b.close()


async def test_server_closing_idle_connections_is_not_an_error(loopback_http):
    srv = await loopback_http(oip_server())
    srv.close_after_answer = True
    b = await started(srv.url)
    try:
        for i in range(10):  # reused at once (stale: one retry) or after the close was seen
            await b.infer({"features": X})
            if i % 2:
                await asyncio.sleep(0.01)
        assert srv.connections >= 10 and b.failures_total == 0
    finally:
        await b.close()


async def test_500s_open_the_breaker_then_half_open_trial_recovers(loopback_http):
    failing = True

    async def flaky(req: Received) -> tuple[int, bytes]:
        if failing:
            return 500, b'{"error": "model crashed: CUDA out of memory"}'
        return 200, oip_answer(req)

    srv = await loopback_http(oip_server(flaky))
    b = await started(srv.url, breaker_failures=3, breaker_cooldown_ms=150)
    try:
        for _ in range(3):
            with pytest.raises(BackendError) as e:
                await b.infer({"features": X})
            assert e.value.status == 502 and "answered 500: model crashed: CUDA out of memory" in str(e.value)
        assert b.breaker.state == "open" and not b.ready()
        posts = sum(r.method == "POST" for r in srv.received)
        with pytest.raises(BackendError) as e:
            await b.infer({"features": X})
        assert e.value.status == 503 and "circuit breaker open after 3 consecutive failures" in str(e.value)
        assert sum(r.method == "POST" for r in srv.received) == posts  # refused without calling upstream
        assert b.rejected_total == 1 and b.failures_total == 3

        await asyncio.sleep(0.2)  # cool-down: the next call is the half-open trial; it fails → open again
        with pytest.raises(BackendError) as e:
            await b.infer({"features": X})
        assert e.value.status == 502 and b.breaker.state == "open"

        failing = False
        await asyncio.sleep(0.2)
        out = await b.infer({"features": X})  # trial succeeds → closed
        assert out["label"].tolist() == [1, 1]
        assert b.breaker.state == "closed" and b.ready()
        await b.infer({"features": X})
    finally:
        await b.close()


async def test_a_call_failing_before_the_upstream_does_not_take_the_half_open_trial(loopback_http):
    """In half-open one trial goes through; a call that raises before reaching the upstream
    (here: an input the JSON encoder cannot write) must not use it up and leave it unreported."""
    srv = await loopback_http(oip_server())
    b = await started(srv.url)
    now = [0.0]
    b.breaker = CircuitBreaker(1, 10.0, clock=lambda: now[0])
    try:
        b.breaker.record_failure()
        now[0] = 10.0  # cool-down over: half-open
        with pytest.raises(TypeError):
            await b.infer({"features": np.array([object()], dtype=object)})
        out = await b.infer({"features": X})  # the trial
        assert out["label"].tolist() == [1, 1] and b.breaker.state == "closed"
    finally:
        await b.close()


async def test_client_fault_4xx_passes_message_with_400_and_does_not_trip(loopback_http):
    async def reject(req: Received) -> tuple[int, bytes]:
        return 400, b'{"error": "input features: expected shape [-1, 10], got [2, 3]"}'

    srv = await loopback_http(oip_server(reject))
    b = await started(srv.url, breaker_failures=1)
    try:
        for _ in range(3):
            with pytest.raises(BackendError) as e:
                await b.infer({"features": X})
            assert e.value.status == 400
            assert "expected shape [-1, 10], got [2, 3]" in str(e.value)
        assert b.breaker.state == "closed" and b.failures_total == 0
    finally:
        await b.close()


@pytest.mark.parametrize("answer,says", [
    (b"<html>oops</html>", "not JSON"),
    (b'{"outputs": [1, 2]}', "every output must be an object"),
    (b'{"outputs": [{"name": "label", "datatype": "INT64", "shape": [3], "data": [1]}]}', "does not fit INT64 [3]"),
    (b'{"outputs": [{"name": "label", "datatype": "INT3", "shape": [1], "data": [1]}]}', "unknown datatype"),
    (b'{"predictions": [1]}', "no 'outputs' list"),
])
async def test_malformed_answer_is_502(loopback_http, answer: bytes, says: str):
    async def garbage(req: Received) -> tuple[int, bytes]:
        return 200, answer

    srv = await loopback_http(oip_server(garbage))
    b = await started(srv.url)
    try:
        with pytest.raises(BackendError) as e:
            await b.infer({"features": X})
        assert e.value.status == 502 and says in str(e.value) and srv.url in str(e.value)
    finally:
        await b.close()


async def test_unknown_model_upstream_fails_start(loopback_http):
    srv = await loopback_http(oip_server())
    b = HttpBackend("nope", 1, http_backend_config(srv.url))
    with pytest.raises(BackendError) as e:
        await b.start()
    await b.close()
    assert "does not serve model /v2/models/nope" in str(e.value) and "no such model" in str(e.value)


async def test_malformed_metadata_leaves_the_backend_not_ready_without_failing_start(loopback_http):
    async def handle(req: Received) -> tuple[int, bytes]:
        return 200, b"[]"  # a 200 that is no metadata object

    srv = await loopback_http(handle)
    b = await started(srv.url)
    try:
        assert not b.ready() and not b.inputs
    finally:
        await b.close()


async def test_remote_model_name_and_version_in_paths(loopback_http):
    async def handle(req: Received) -> tuple[int, bytes]:
        if req.path == "/v2/models/credit/versions/7":
            return 200, OIP_CREDIT_METADATA
        if req.path == "/v2/models/credit/versions/7/ready":
            return 200, b""
        if req.path == "/v2/models/credit/versions/7/infer":
            return 200, oip_answer(req)
        return 404, b'{"error": "wrong path"}'

    srv = await loopback_http(handle)
    b = HttpBackend("credit-risk", 3, http_backend_config(srv.url, remote_model="credit", remote_version="7"))
    await b.start()
    try:
        assert b.ready() and b.inputs
        assert (await b.infer({"features": X}))["label"].shape == (2,)
    finally:
        await b.close()


async def test_header_pass_through_policy(loopback_http):
    srv = await loopback_http(oip_server())
    b = await started(srv.url)
    try:
        asgi_headers = [
            (b"x-request-id", b"req-42"),
            (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            (b"tracestate", b"vendor=abc"), (b"baggage", b"tenant=acme"),
            (b"authorization", b"Bearer secret"), (b"cookie", b"session=1"), (b"x-user-id", b"u1"),
            (b"host", b"client.example"),
        ]
        out = await b.infer({"features": X}, headers=asgi_headers)
        assert out["label"].shape == (2,)
        h = srv.received[-1].headers
        assert h["x-request-id"] == "req-42" and h["traceparent"].startswith("00-4bf92f35")
        assert h["tracestate"] == "vendor=abc" and h["baggage"] == "tenant=acme"
        assert "authorization" not in h and "cookie" not in h and "x-user-id" not in h
        assert h["host"] == srv.url.removeprefix("http://")
        assert orjson.loads(srv.received[-1].body)["id"] == "req-42"
        # A proxy-generated id, with a mapping of headers
        await b.infer({"features": X}, headers={"traceparent": "00-aa-bb-01"}, request_id="gen-1")
        assert srv.received[-1].headers["x-request-id"] == "gen-1"
        assert srv.received[-1].headers["traceparent"] == "00-aa-bb-01"
    finally:
        await b.close()


async def test_pool_bounds_connections(loopback_http):
    inflight = 0
    peak = 0

    async def slow(req: Received) -> tuple[int, bytes]:
        nonlocal inflight, peak
        inflight += 1
        peak = max(peak, inflight)
        await asyncio.sleep(0.02)
        inflight -= 1
        return 200, oip_answer(req)

    srv = await loopback_http(oip_server(slow))
    b = await started(srv.url, max_connections=2)
    try:
        outs = await asyncio.gather(*(b.infer({"features": X}) for _ in range(10)))
        assert len(outs) == 10 and peak <= 2 and srv.connections <= 2
    finally:
        await b.close()


async def test_health_reflects_upstream_going_away(loopback_http):
    srv = await loopback_http(oip_server())
    b = await started(srv.url, connect_timeout_ms=200, timeout_ms=300)
    try:
        assert b.ready()
        srv.server.close()
        for w in list(srv.writers):
            w.transport.abort()
        await b._probe()  # what the background health loop runs every couple of seconds
        assert not b.ready()
    finally:
        await b.close()


def test_breaker_states_with_a_clock():
    now = [0.0]
    br = CircuitBreaker(2, 10.0, clock=lambda: now[0])
    assert br.allow()
    br.record_failure()
    assert br.state == "closed" and br.allow()
    br.record_success()  # success resets the count
    br.record_failure()
    assert br.state == "closed"
    br.record_failure()
    assert br.state == "open" and not br.allow() and br.retry_after_s() == 10.0
    now[0] = 9.9
    assert not br.allow()
    now[0] = 10.0
    assert br.state == "half_open"
    assert br.allow()  # the one trial
    assert not br.allow()  # others wait for its outcome
    br.record_failure()
    assert br.state == "open" and br.opened_total == 2
    now[0] = 20.0
    assert br.allow()
    br.record_success()
    assert br.state == "closed" and br.allow() and br.allow()


async def test_client_reads_chunked_and_connection_close_answers():
    """Real servers answer chunked (streaming frameworks) or close after one answer; both parse."""
    from proxy.upstream_client import UpstreamClient

    answer = b'{"outputs": [{"name": "y", "datatype": "INT64", "shape": [2], "data": [4, 5]}]}'
    served = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            served += 1
            if served % 2:
                half = len(answer) // 2
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                             + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, answer[:half], len(answer) - half, answer[half:]))
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(answer), answer))
                await writer.drain()
                break
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    client = UpstreamClient(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout_s=2)
    try:
        for _ in range(4):
            status, body = await client.request("POST", "/x", b"{}")
            assert status == 200 and body == answer
        assert served == 4
    finally:
        await client.close()
        server.close()
