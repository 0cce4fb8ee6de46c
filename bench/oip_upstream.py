"""A lean, real Open Inference Protocol model server for the upstream benchmarks.

Raw ASGI on uvicorn (uvloop + httptools) running the demo credit model in onnxruntime, so the
benchmarks measure the proxy, not a slow upstream. Serves `GET /v2/health/ready`,
`GET /v2/models/{m}`, `POST /v2/models/{m}/infer`; a POST anywhere else (e.g. nginx's mirror)
gets `204`, no body. Usage: python bench/oip_upstream.py --port 9001 [--model credit]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn

from shadowlane.demo_models import credit_model, save

JSON = [(b"content-type", b"application/json")]


def make_app(model_name: str = "credit"):
    path = save(credit_model(), os.path.join(tempfile.mkdtemp(prefix="oip-upstream-"), "m.onnx"))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    meta = orjson.dumps({
        "name": model_name, "versions": ["1"], "platform": "onnx_onnxv1",
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 10]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}],
    })
    infer_path = f"/v2/models/{model_name}/infer"
    meta_paths = {f"/v2/models/{model_name}", f"/v2/models/{model_name}/versions/1"}

    async def send(send_, status: int, body: bytes = b"", headers=JSON) -> None:
        await send_({"type": "http.response.start", "status": status, "headers": headers if body else []})
        await send_({"type": "http.response.body", "body": body})

    async def app(scope, receive, send_):
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        path = scope["path"]
        if scope["method"] == "POST" and path == infer_path:
            doc = orjson.loads(b"".join(chunks))
            t = doc["inputs"][0]
            x = np.asarray(t["data"], np.float32).reshape(t["shape"])
            label, proba = sess.run(None, {"features": x})
            out = {"model_name": model_name, "model_version": "1", "outputs": [
                {"name": "label", "datatype": "INT64", "shape": list(label.shape), "data": label},
                {"name": "probabilities", "datatype": "FP32", "shape": list(proba.shape), "data": proba.ravel()}]}
            if "id" in doc:
                out["id"] = doc["id"]
            await send(send_, 200, orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY))
        elif scope["method"] == "POST":
            await send(send_, 204)  # mirror receiver: no body, so nginx keeps the connection
        elif path in meta_paths:
            await send(send_, 200, meta)
        elif path in ("/v2/health/ready", "/v2/health/live", f"/v2/models/{model_name}/ready"):
            await send(send_, 200, b'{"ready": true}')
        else:
            await send(send_, 404, b'{"error": "not found"}')

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", default="credit")
    a = ap.parse_args()
    uvicorn.run(make_app(a.model), host=a.host, port=a.port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
