"""The trading transaction: snapshot reads, majority writes, retried on a transient conflict.

Every write that moves cash, shares or reservations (market orders, resting orders, fills,
cancels, expiries) runs inside `trading_transaction()`, through `with_retries`.
"""

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar, cast

from django.db import DatabaseError
from django.db import connection as default_connection
from django_mongodb_backend import transaction
from django_mongodb_backend.base import DatabaseWrapper
from pymongo.client_session import ClientSession
from pymongo.errors import PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from apps.core.backoff import backoff_delay
from apps.core.metrics import ORDER_CONFLICTS

# The backend's own wrapper: sessions and raw collections for the order transaction.
connection = cast(DatabaseWrapper, default_connection)

WRITE_CONFLICT = 112
# An order waits for its trader's earlier orders, and retries a rare conflict, this long before it is
# refused as busy: inside the request's MongoDB deadline (MONGODB_REQUEST_TIMEOUT_MS, 3 s), so the
# answer is ours, not a timeout. 50 queued orders of one trader take well under it (docs/performance.md).
TRANSACTION_BUDGET_SECONDS = 2.0
BACKOFF_FIRST_SECONDS = 0.002
BACKOFF_MAX_SECONDS = 0.1

T = TypeVar("T")


class TransactionBusy(Exception):
    """Conflicts did not clear within the budget."""


@contextmanager
def trading_transaction() -> Iterator[None]:
    """One MongoDB transaction with read concern snapshot and write concern majority.

    The backend's atomic() starts its session with the server defaults; we start
    the session ourselves with explicit concerns and let atomic() adopt it (it
    only opens a session when none exists), so commit, rollback and on_commit
    hooks stay the backend's. Nested inside another atomic(), we join that one.
    """
    if connection.in_atomic_block_mongo:
        with transaction.atomic():
            yield
        return
    connection.ensure_connection()
    session = connection.connection.start_session()
    session.start_transaction(read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority"))
    connection.session = session
    try:
        with transaction.atomic():
            yield
    finally:
        # A driver error raised by the commit itself escapes atomic() without its cleanup.
        if connection.session is not None and not connection.in_atomic_block_mongo:
            session, connection.session = connection.session, None
            connection.run_on_commit = []
            if session.in_transaction:
                # In a fresh context: outside the request's MongoDB deadline (pymongo.timeout), which may
                # be what failed. An abandoned transaction would hold its writes until the server's limit.
                contextvars.Context().run(_abort_quietly, session)
            session.end_session()


def _abort_quietly(session: ClientSession) -> None:
    with contextlib.suppress(PyMongoError):
        session.abort_transaction()


def is_transient(error: BaseException) -> bool:
    """A transaction conflict worth retrying (the driver's error may be wrapped in Django's)."""
    for candidate in (error, error.__cause__):
        if isinstance(candidate, PyMongoError) and candidate.timeout:
            return False  # the request's deadline is spent: retrying cannot help (the caller answers 503)
        if isinstance(candidate, PyMongoError) and (
            candidate.has_error_label("TransientTransactionError")
            or candidate.has_error_label("UnknownTransactionCommitResult")
            or getattr(candidate, "code", None) == WRITE_CONFLICT
        ):
            return True
    return False


def backoff(attempt: int) -> None:
    """Sleep between 0.5 and 1.5 times min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2**attempt).

    The one backoff's jitter takes up to a fraction off its ceiling: a ceiling 1.5 times as high with
    2/3 taken off at most spans the same range."""
    time.sleep(
        backoff_delay(attempt, base=BACKOFF_FIRST_SECONDS * 1.5, maximum=BACKOFF_MAX_SECONDS * 1.5, jitter=2 / 3)
    )


def with_retries(work: Callable[[], T], *, deadline: float) -> T:
    """`work()` in one trading transaction, again after a transient conflict until `deadline` (monotonic)."""
    attempt = 0
    while True:
        try:
            with trading_transaction():
                return work()
        except (DatabaseError, PyMongoError) as error:
            if not is_transient(error):
                raise
            ORDER_CONFLICTS.inc()
            if time.monotonic() > deadline:
                raise TransactionBusy from None
            backoff(attempt)
            attempt += 1
