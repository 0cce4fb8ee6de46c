"""nginx baselines (Debian's nginx): `proxy_pass` to an upstream, and the same plus `mirror`.

One worker process, keep-alive to the upstreams, no access log: nginx at its leanest, the native
peer a user would otherwise put in front of a model server for network-level shadowing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  keepalive_requests 1000000;
  upstream champion {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  {mirror_upstream}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      {mirror}
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://champion;
    }}
    location = /_mirror {{
      internal;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://shadow$request_uri;
    }}
  }}
}}
"""


def available() -> str | None:
    """None when nginx is installed, else why not."""
    return None if shutil.which("nginx") else "nginx is not installed (scripts/install_bench_tools.sh)"


def write_conf(directory: Path, *, port: int, upstream_port: int, mirror_port: int | None = None) -> list[str]:
    """Write an nginx config into `directory`; returns the argv that runs it in the foreground."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = _CONF.format(
        dir=directory, port=port, upstream_port=upstream_port,
        mirror_upstream=f"upstream shadow {{ server 127.0.0.1:{mirror_port}; keepalive 64; }}"
        if mirror_port else f"upstream shadow {{ server 127.0.0.1:{upstream_port}; }}",
        mirror="mirror /_mirror; mirror_request_body on;" if mirror_port else "")
    path = directory / "nginx.conf"
    path.write_text(conf)
    return ["nginx", "-p", str(directory), "-c", str(path)]
