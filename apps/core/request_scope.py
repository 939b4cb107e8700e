"""What one request carries down its call stack: the cache lookups it made and its MongoDB deadline.

- `record_cache_lookup(result)` is the hook the cache calls for each lookup made
  while serving a request; the request-metrics middleware (apps/monitoring)
  opens the list with `cache_lookups.set([])` and labels the request from it.
- A request runs inside `pymongo.timeout(MONGODB_REQUEST_TIMEOUT_MS)`; when it runs
  out of time the answer is `database_timeout_response()`, a 503 JSON answer, never a 500.

Core owns these so that the cache (core) and the API's exception handler (trading)
need not import the monitoring app.
"""

import contextvars

from django.http import JsonResponse
from pymongo.errors import PyMongoError

RETRY_AFTER_SECONDS = 2

cache_lookups: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("cache_lookups", default=None)


def record_cache_lookup(result: str) -> None:
    """Note one cache lookup of the request being served (no-op outside a request)."""
    lookups = cache_lookups.get()
    if lookups is not None:
        lookups.append(result)


def is_database_timeout(error: BaseException | None) -> bool:
    """A pymongo timeout, also when django-mongodb-backend re-raised it as a DatabaseError."""
    seen = 0
    while error is not None and seen < 5:
        if isinstance(error, PyMongoError):
            return bool(error.timeout)
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def database_timeout_response() -> JsonResponse:
    response = JsonResponse(
        {"detail": "The database did not answer in time; try again shortly.", "code": "database_timeout"},
        status=503,
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
