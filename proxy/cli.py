"""`shadowlane serve` and `shadowlane check-config`."""

from __future__ import annotations

import argparse
import os
import sys

from proxy.config import ConfigError, load_config


def check_config_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="shadowlane check-config", description="Validate a deployment config.")
    p.add_argument("config")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        print(f"{args.config}: invalid deployment config:\n{err}", file=sys.stderr)
        return 2
    for name, ep in cfg.endpoints.items():
        m = cfg.models[ep.champion]
        print(f"endpoint {name}: champion {m.name} v{m.version}, "
              f"{len(ep.challengers)} challenger(s), {len(ep.shadows)} shadow(s)")
    return 0


def serve_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="shadowlane serve", description="Run the shadowlane proxy.")
    # Environment defaults let a container image set everything without a shell wrapper.
    env = os.environ
    p.add_argument("--config", "-c", default=env.get("SHADOWLANE_CONFIG"),
                   help="deployment config (YAML); default $SHADOWLANE_CONFIG")
    p.add_argument("--host", default=env.get("SHADOWLANE_HOST"),
                   help="bind address (default: $SHADOWLANE_HOST, else server.host in the config)")
    p.add_argument("--port", type=int, default=int(env["SHADOWLANE_PORT"]) if env.get("SHADOWLANE_PORT") else None,
                   help="port (default: $SHADOWLANE_PORT, else server.port in the config)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--log-level", default="warning")
    args = p.parse_args(argv)
    if not args.config:
        p.error("no deployment config: pass --config or set SHADOWLANE_CONFIG")
    try:
        cfg = load_config(args.config)
        # Load every model once here so a bad file fails fast with a clear message, not in a worker.
        from proxy.app import build_app

        build_app(cfg)
    except ConfigError as err:
        print(f"{args.config}: invalid deployment config:\n{err}", file=sys.stderr)
        return 2
    except Exception as err:  # a model that does not load: say which and why, no traceback
        print(f"{args.config}: cannot start: {err}", file=sys.stderr)
        return 2
    from proxy.server import serve

    serve(args.config, host=args.host or cfg.server.host, port=args.port if args.port is not None else cfg.server.port,
          workers=args.workers, log_level=args.log_level)
    return 0
