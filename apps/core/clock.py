"""The one millisecond clock: epoch milliseconds, the way ticks, frames, cursors and MongoDB count time.

Exact integer arithmetic throughout (float seconds * 1000 can round a whole millisecond down).
"""

import time
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_MICROSECOND = timedelta(microseconds=1)


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def moment(milliseconds: int) -> datetime:
    """The UTC datetime of an epoch-milliseconds value."""
    return EPOCH + milliseconds * _MILLISECOND


def epoch_ms(when: datetime) -> int:
    """Whole milliseconds since the epoch, rounded down (exact)."""
    return (when - EPOCH) // _MILLISECOND


def epoch_ms_ceiling(when: datetime) -> int:
    """The first whole millisecond at or after `when`: a point is older than `when` iff it is before this."""
    microseconds = (when - EPOCH) // _MICROSECOND
    return -(-microseconds // 1000)


def to_milliseconds(when: datetime) -> datetime:
    """`when` cut to whole milliseconds, as MongoDB stores it (in-memory times then equal stored ones)."""
    return when.replace(microsecond=when.microsecond // 1000 * 1000)
