"""The one circuit breaker: for calls to an outside service (the alert webhook, `call`) and for the
cache's Redis (`is_open` / `trip` / `reset`, the cache tells it the outcome itself).

closed: calls go through; `failures_to_open` failures in a row open it.
open: calls fail at once with CircuitOpen (a dead receiver costs nothing)
until `cooldown_seconds` have passed; then half-open.
half-open: one trial call goes through (others still fail fast); success
closes the breaker, failure opens it for another cool-down.
State is per process: with several worker processes a dead receiver costs at
most `failures_to_open` timeouts per process per cool-down.

The cache uses it with failures_to_open=1: `trip()` after a Redis failure opens it for
the cool-down; `is_open` is true only during it, so afterwards every call probes again
(the cache does not limit half-open to one trial), and `reset()` after a success closes it.
"""

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitOpen(Exception):
    """The breaker refused the call without trying it."""


class CircuitBreaker:
    def __init__(
        self, *, failures_to_open: int, cooldown_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if failures_to_open < 1 or cooldown_seconds <= 0:
            raise ValueError("failures_to_open must be >= 1 and cooldown_seconds > 0")
        self.failures_to_open = failures_to_open
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def cooldown(self) -> float:
        return self.cooldown_seconds

    @property
    def is_open(self) -> bool:
        """Open and still cooling down (half-open counts as not open)."""
        return self.state == OPEN

    def trip(self) -> bool:
        """Open the breaker now; True when it was not open (the first failure of an outage)."""
        with self._lock:
            was_open = self._state() == OPEN
            self._failures += 1
            self._opened_at = self._clock()
            return not was_open

    def reset(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._trial_running = 0, None, False

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        return HALF_OPEN if self._clock() - self._opened_at >= self.cooldown_seconds else OPEN

    def call(self, action: Callable[[], T]) -> T:
        with self._lock:
            state = self._state()
            if state == OPEN or (state == HALF_OPEN and self._trial_running):
                raise CircuitOpen(f"circuit open; next trial in {self._seconds_to_trial():.0f} s")
            self._trial_running = state == HALF_OPEN
        try:
            result = action()
        except Exception:
            self._record(success=False)
            raise
        self._record(success=True)
        return result

    def _record(self, *, success: bool) -> None:
        with self._lock:
            self._trial_running = False
            if success:
                self._failures, self._opened_at = 0, None
                return
            self._failures += 1
            if self._opened_at is not None or self._failures >= self.failures_to_open:
                self._opened_at = self._clock()  # a failed trial re-opens for a full cool-down

    def _seconds_to_trial(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.cooldown_seconds - (self._clock() - self._opened_at))
