"""Prometheus metrics, one registry per app. Children are resolved once (`labels()` costs
~2-5 µs a call) and handed to the hot path and the shadow workers as plain objects.

Names follow Prometheus conventions: `shadowlane_` prefix, base units, `_total` counters.
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

# Sub-millisecond buckets: the proxy's own overhead lives there; backends take 1-50 ms.
LATENCY_BUCKETS = (.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5)
DIVERGENCE_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .2, .3, .5, .75, 1.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter("shadowlane_requests", "Requests answered, by endpoint, variant and HTTP status.",
                                ["endpoint", "variant", "code"], registry=r)
        self.request_duration = Histogram(
            "shadowlane_request_duration_seconds",
            "Time from request body received to response sent, by endpoint and variant.",
            ["endpoint", "variant"], buckets=LATENCY_BUCKETS, registry=r)
        self.shadow_enqueued = Counter("shadowlane_shadow_enqueued", "Shadow jobs queued.",
                                       ["endpoint", "shadow"], registry=r)
        self.shadow_completed = Counter("shadowlane_shadow_completed", "Shadow inferences that answered.",
                                        ["endpoint", "shadow"], registry=r)
        self.shadow_failed = Counter("shadowlane_shadow_failed", "Shadow inferences that raised or timed out.",
                                     ["endpoint", "shadow", "reason"], registry=r)
        self.shadow_dropped = Counter("shadowlane_shadow_dropped",
                                      "Shadow jobs dropped before running (queue full), by reason.",
                                      ["endpoint", "shadow", "reason"], registry=r)
        self.shadow_duration = Histogram("shadowlane_shadow_duration_seconds", "Shadow model call time.",
                                         ["endpoint", "shadow"], buckets=LATENCY_BUCKETS, registry=r)
        self.divergence = Histogram(
            "shadowlane_divergence_abs",
            "Absolute difference between champion and shadow scores, per row.",
            ["endpoint", "shadow"], buckets=DIVERGENCE_BUCKETS, registry=r)
        self.agreement = Counter("shadowlane_label_agreement",
                                 "Rows where champion and shadow labels agree (agree=true) or not.",
                                 ["endpoint", "shadow", "agree"], registry=r)

class _Callback:
    """A collector that calls `fn` at scrape time (queue depths, sink stats): nothing on the hot path."""

    def __init__(self, fn: Callable[[], Iterable[Metric]]):
        self._fn = fn

    def collect(self) -> Iterable[Metric]:
        return self._fn()


_RECORD_OUTCOMES = frozenset({"emitted", "written", "dropped", "spilled", "replayed"})
_GAUGES = {
    "lag_s": ("shadowlane_sink_lag_seconds", "Age of the oldest record not yet delivered."),
    "spill_bytes": ("shadowlane_sink_spill_bytes", "Bytes held in local spill segments."),
}


def sink_metrics(sink_name: str, stats: object, depth: int, queue_depth: int,
                 worker: str | None = None) -> list[Metric]:
    """Sink counters (from SinkStats fields) and buffer depths as metric families. With several
    worker processes each reports its own, labelled `worker` (its pid)."""
    extra = ["worker"] if worker is not None else []
    tail = [worker] if worker is not None else []
    records = CounterMetricFamily("shadowlane_sink_records", "Shadow records by sink outcome.",
                                  labels=["sink", "outcome", *extra])
    others: list[Metric] = []
    for field, value in vars(stats).items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or field.startswith("_"):
            continue
        if field in _RECORD_OUTCOMES:
            records.add_metric([sink_name, field, *tail], value)
        elif field in _GAUGES:
            name, doc = _GAUGES[field]
            g = GaugeMetricFamily(name, doc, labels=["sink", *extra])
            g.add_metric([sink_name, *tail], value)
            others.append(g)
        else:  # any other sink counter, e.g. producer_starts -> shadowlane_sink_producer_starts_total
            c = CounterMetricFamily(f"shadowlane_sink_{field}", f"Sink counter {field}.", labels=["sink", *extra])
            c.add_metric([sink_name, *tail], value)
            others.append(c)
    buffered = GaugeMetricFamily("shadowlane_sink_buffer_records", "Records buffered in memory by the sink.",
                                 labels=["sink", *extra])
    buffered.add_metric([sink_name, *tail], depth)
    queue = GaugeMetricFamily("shadowlane_shadow_queue_jobs", "Shadow jobs waiting for a worker.", labels=extra)
    queue.add_metric(tail, queue_depth)
    out: list[Metric] = [records, buffered, queue, *others]
    return out
