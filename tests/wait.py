"""Waiting on a condition in tests: poll it until it holds, fail with what was awaited when it never does."""

import time
from collections.abc import Callable


def wait_until(
    condition: Callable[[], object], *, timeout: float = 30.0, what: str = "the condition", poll: float = 0.01
) -> float:
    """Poll `condition` until it is true; the seconds it took. AssertionError naming `what` after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(poll)  # polling a condition, not standing in for one
    return time.monotonic() - started
