"""A per-upstream circuit breaker: stop calling a server that keeps failing, probe it again later.

closed ──N consecutive failures──▶ open ──cool-down elapsed──▶ half-open (one trial request)
   ▲                                  ▲                              │
   └──────────── trial succeeds ──────┼──────────────────────────────┤
                                      └──────── trial fails ─────────┘

Only the upstream's own faults count (refused, timed out, 5xx, unreadable answer); a 4xx caused
by the client's input proves the server is alive and counts as a success.
"""

from __future__ import annotations

import time
from typing import Callable, Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Counts consecutive failures of one upstream. Not thread-safe: use it from one event loop."""

    def __init__(self, failures: int, cooldown_s: float, *, clock: Callable[[], float] = time.monotonic):
        if failures < 1:
            raise ValueError(f"breaker failures must be >= 1 (got {failures})")
        if cooldown_s <= 0:
            raise ValueError(f"breaker cool-down must be > 0 s (got {cooldown_s})")
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state: State = "closed"
        self._consecutive = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self.opened_total = 0  # times the breaker opened, for metrics

    @property
    def state(self) -> State:
        """The state as of now (an open breaker whose cool-down has passed reads half-open)."""
        if self._state == "open" and self._clock() - self._opened_at >= self.cooldown_s:
            return "half_open"
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive

    def retry_after_s(self) -> float:
        """Seconds until an open breaker lets a trial request through (0 when it would now)."""
        if self._state != "open":
            return 0.0
        return max(0.0, self.cooldown_s - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """May a request go upstream now? In half-open, exactly one trial is let through until
        its outcome is recorded."""
        if self._state == "closed":
            return True
        if self._state == "open":
            if self._clock() - self._opened_at < self.cooldown_s:
                return False
            self._state = "half_open"
            self._trial_in_flight = False
        if self._trial_in_flight:
            return False
        self._trial_in_flight = True
        return True

    def record_success(self) -> None:
        self._state = "closed"
        self._consecutive = 0
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._consecutive += 1
        if self._state == "half_open" or self._consecutive >= self.threshold:
            if self._state != "open":
                self.opened_total += 1
            self._state = "open"
            self._opened_at = self._clock()
            self._trial_in_flight = False
