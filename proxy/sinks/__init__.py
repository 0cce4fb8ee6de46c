"""Where shadow records go. `base.Sink` is the contract; `build_sink` picks one from config."""

from proxy.sinks.base import Sink, SinkStats, build_sink

__all__ = ["Sink", "SinkStats", "build_sink"]
