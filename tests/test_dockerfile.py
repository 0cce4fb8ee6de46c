"""The Dockerfile passes hadolint, and its ENTRYPOINT + ENV start a ready proxy without Docker."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from tests.fixtures.proxy import REPO, base_config, free_port

DOCKERFILE = REPO / "Dockerfile"


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    out = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def _final_stage() -> str:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return text[text.rindex("\nFROM "):]


def test_entrypoint_runs_without_docker(onnx_models: dict[str, Path], tmp_path: Path) -> None:
    stage = _final_stage()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", stage, re.M).group(1))
    env_line = re.search(r"^ENV (.*)$", stage, re.M).group(1)
    image_env = dict(part.split("=", 1) for part in shlex.split(env_line))
    assert entrypoint[0] == "shadowlane"
    config = tmp_path / "deploy.yaml"
    config.write_text(yaml.safe_dump(base_config(onnx_models, tmp_path / "log")))
    port = free_port()
    # The image's own environment, with the config path and port a test can use.
    env = {**os.environ, **image_env, "SHADOWLANE_CONFIG": str(config), "SHADOWLANE_PORT": str(port),
           "SHADOWLANE_HOST": "127.0.0.1"}
    argv = [str(Path(sys.executable).with_name(entrypoint[0])), *entrypoint[1:]]
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        import time

        deadline = time.monotonic() + 30
        ready = False
        while time.monotonic() < deadline and proc.poll() is None and not ready:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.1)
        assert ready, proc.stdout.read().decode() if proc.poll() is not None else "not ready"
        health = re.search(r"HEALTHCHECK .*CMD (\[.*\])", stage).group(1)
        check = json.loads(health)
        check[0] = sys.executable
        assert subprocess.run(check, env=env, timeout=10).returncode == 0
    finally:
        proc.terminate()
        proc.wait(15)
