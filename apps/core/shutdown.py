"""How a long-running worker command stops: SIGTERM (the supervisor) or SIGINT (Ctrl-C) asks it to
finish the step under way and leave, so nothing it read is left half-handled.

    with stop_requested() as stopping:
        while not stopping():
            worker.step()
"""

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from django.core.management.base import CommandError

CONSUMER_NAME_MAX = 100


@contextmanager
def stop_requested() -> Iterator[Callable[[], bool]]:
    """A check of whether SIGTERM or SIGINT arrived; the previous handlers are back on exit."""
    asked = False

    def ask(signum: int, frame: FrameType | None) -> None:
        nonlocal asked
        asked = True

    previous = {sig: signal.signal(sig, ask) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield lambda: asked
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def consumer_name(name: str) -> str:
    """A stream consumer's name given as --consumer: 1 to 100 printable characters."""
    if not 0 < len(name) <= CONSUMER_NAME_MAX or not name.isprintable():
        raise CommandError(f"--consumer: must be 1 to {CONSUMER_NAME_MAX} printable characters")
    return name
