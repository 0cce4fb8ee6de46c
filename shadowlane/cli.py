"""`shadowlane` command: a thin dispatcher so each subcommand imports only what it needs.

The serving commands (serve, demo, shadow-worker) never import `gates/` (and so never mlflow);
the offline commands live in `gates.cli`.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, function, one-line help). Each function takes argv (list[str]) -> int.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "serve": ("proxy.cli", "serve_main", "run the proxy from a deployment config"),
    "check-config": ("proxy.cli", "check_config_main", "validate a deployment config and exit"),
    "demo": ("shadowlane.demo", "main", "run the end-to-end demo on the embedded default"),
    "shadow-worker": ("proxy.shadow_worker", "main", "consume the requests topic and run shadows (decoupled mode)"),
    "gate": ("gates.gate_cmd", "main", "evaluate the promotion gates over a shadow log"),
    "replay": ("gates.replay", "main", "run a candidate over logged requests, writing shadow records"),
    "pin": ("gates.cli", "pin_main", "resolve registry aliases to versions in a deployment config"),
    "audit": ("gates.cli", "audit_main", "verify or show the hash-chained audit log"),
    "review": ("gates.cli", "review_main", "request, approve or reject a promotion"),
    "promote": ("gates.cli", "promote_main", "move a reviewed model version along its lifecycle"),
    "registry": ("gates.cli", "registry_main", "copy model versions between registries with provenance"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items())
    return f"usage: shadowlane <command> [options]\n\ncommands:\n{rows}\n\n`shadowlane <command> --help` for details."


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from shadowlane import __version__

        print(f"shadowlane {__version__}")
        return 0
    entry = COMMANDS.get(argv[0])
    if entry is None:
        print(f"shadowlane: unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func, _ = entry
    return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
