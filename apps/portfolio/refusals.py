"""Refusals a burst of one trader's market orders shares, so that a queue of unaffordable orders drains fast.

A trader's orders run one at a time (`apps.core.locks.one_at_a_time`). When a market order is refused for
lack of buying power or of unreserved shares, every market order of the same trader, symbol and side that
was already waiting when the refusal was decided, and asks at least as much, is refused as well, without
a transaction: it is the outcome of running it right after the refused one, at the same price and with
the account unchanged (nothing else could change the account while the lock was held). That position in
a serial order lies inside the waiting order's own lifetime, so the outcome stays that of some serial
order of the trader's requests. An order that arrived after the refusal runs normally: a cancel or a fill
in between may have freed what it needs.

Only refusals decided under the held lock count (`note` is given `locked`): without Redis the lock is
skipped, other processes' writes can interleave, and nothing is remembered. Per process, bounded.
"""

import threading
import time
from collections import OrderedDict
from typing import NamedTuple

from apps.portfolio.execution import OrderRejected

SHORTAGES = frozenset({"insufficient_cash", "insufficient_holding"})
REMEMBERED = 4096


class _Refusal(NamedTuple):
    at: float  # time.monotonic() when it was decided, under the trader's lock
    quantity: int
    rejection: OrderRejected


_refusals: "OrderedDict[tuple[str, str, str], _Refusal]" = OrderedDict()
_guard = threading.Lock()


def note(key: tuple[str, str, str], quantity: int, rejection: OrderRejected, *, locked: bool) -> None:
    """Remember a market order of `key` (trader id, symbol, side) refused for a shortage."""
    if not locked or rejection.code not in SHORTAGES:
        return
    with _guard:
        _refusals[key] = _Refusal(time.monotonic(), quantity, rejection)
        _refusals.move_to_end(key)
        while len(_refusals) > REMEMBERED:
            _refusals.popitem(last=False)


def shared(key: tuple[str, str, str], quantity: int, *, arrived: float) -> OrderRejected | None:
    """The refusal an order waiting since `arrived` (time.monotonic()) shares, if any: a later one of at
    least its quantity. The caller holds the trader's lock."""
    refusal = _refusals.get(key)
    if refusal is None or refusal.at < arrived or quantity < refusal.quantity:
        return None
    first = refusal.rejection
    message = first.message.replace(f" {refusal.quantity} ", f" {quantity} ", 1)
    return OrderRejected(first.code, first.field, message, first.status)
