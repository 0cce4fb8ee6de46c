"""The upstream for upstream-mode benchmarks: a lean OIP (KServe V2) model server.

Raw ASGI + orjson + onnxruntime running the demo credit model, so the upstream is cheap and the
proxy's (or nginx's) own cost stands out. Serves `POST /v2/models/{name}/infer`, `GET
/v2/models/{name}` (metadata), `GET /v2/models/{name}/ready` and `GET /v2/health/{live,ready}`
for any model name.
The model file comes from $BENCH_ONNX_MODEL (default: the demo credit model, built at start).
With BENCH_REPLY_204=1 it runs the model and answers 204 without a body: an nginx `mirror`
target doing a shadow's work (nginx reads only the mirror's headers).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

from shadowlane.demo_models import credit_model, save

_path = os.environ.get("BENCH_ONNX_MODEL") or str(save(credit_model(), tempfile.mkdtemp() + "/credit.onnx"))
_opts = ort.SessionOptions()
_opts.intra_op_num_threads = 1
_opts.inter_op_num_threads = 1
_sess = ort.InferenceSession(_path, _opts, providers=["CPUExecutionProvider"])
_in = _sess.get_inputs()[0].name
_OPT = orjson.OPT_SERIALIZE_NUMPY
_JSON = [(b"content-type", b"application/json")]
_REPLY_204 = os.environ.get("BENCH_REPLY_204") == "1"


def _metadata(name: str) -> bytes:
    return orjson.dumps({
        "name": name, "versions": ["1"], "platform": "onnx_onnxv1",
        "inputs": [{"name": _in, "datatype": "FP32", "shape": [-1, 10]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}]})


async def _reply(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": _JSON + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    parts = scope["path"].strip("/").split("/")
    if scope["method"] == "GET":
        if parts[:2] == ["v2", "health"]:
            return await _reply(send, 200, b'{"ready":true}')
        if len(parts) == 3 and parts[:2] == ["v2", "models"]:
            return await _reply(send, 200, _metadata(parts[2]))
        if len(parts) == 4 and parts[:2] == ["v2", "models"] and parts[3] == "ready":
            return await _reply(send, 200, orjson.dumps({"name": parts[2], "ready": True}))
        return await _reply(send, 404, b'{"error":"not found"}')
    if len(parts) != 4 or parts[3] != "infer":
        return await _reply(send, 404, b'{"error":"not found"}')
    try:
        req = orjson.loads(body)
        inp = req["inputs"][0]
        x = np.asarray(inp["data"], dtype=np.float32).reshape(inp["shape"])
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as err:
        return await _reply(send, 400, orjson.dumps({"error": f"bad request: {err}"}))
    label, proba = _sess.run(None, {_in: x})
    if _REPLY_204:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        return await send({"type": "http.response.body", "body": b""})
    out = {"model_name": parts[2], "model_version": "1", "outputs": [
        {"name": "label", "datatype": "INT64", "shape": label.shape, "data": label},
        {"name": "probabilities", "datatype": "FP32", "shape": proba.shape, "data": proba.reshape(-1)}]}
    if "id" in req:
        out["id"] = req["id"]
    await _reply(send, 200, orjson.dumps(out, option=_OPT))
