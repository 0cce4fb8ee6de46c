# syntax=docker/dockerfile:1
# The serving image: the proxy only. The offline tools (gates/, mlflow) are not installed here;
# run them from the `gates` extra in CI or a separate image.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shadowlane ./shadowlane
COPY proxy ./proxy
COPY router ./router
COPY gates ./gates
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SHADOWLANE_CONFIG=/etc/shadowlane/deploy.yaml \
    SHADOWLANE_HOST=0.0.0.0 \
    SHADOWLANE_PORT=8000
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/shadowlane --create-home shadowlane
USER 10001:10001
WORKDIR /var/lib/shadowlane
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=2s --start-period=20s \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ['SHADOWLANE_PORT'], timeout=2)"]
# Mount the deployment config at $SHADOWLANE_CONFIG (and its ONNX files beside it).
ENTRYPOINT ["shadowlane", "serve"]
