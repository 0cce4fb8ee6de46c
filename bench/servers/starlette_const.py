"""Baseline (a): a bare starlette endpoint that reads the body and returns a constant JSON.

Serves the same paths the proxy does, so one load script drives both.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = b'{"model_name":"credit","model_version":"1","outputs":[{"name":"label","shape":[1],"datatype":"INT64","data":[0]}]}'


async def infer(request: Request) -> Response:
    await request.body()
    return Response(BODY, media_type="application/json")


app = Starlette(routes=[Route("/v2/models/{name}/infer", infer, methods=["POST"]),
                        Route("/invocations", infer, methods=["POST"])])
