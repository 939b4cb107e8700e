"""API rate limit (Property 12): API_RATE_LIMIT requests per window per trader, per IP when anonymous.

One middleware for every /api/ path. The count is one Redis round trip (INCR and
EXPIRE in one pipeline, fixed windows) on the default cache's Redis. Who is
counted comes from the bearer token's cached context (apps.core.tokens), which
the middleware keeps on the request so authentication reuses it: a cached
request is authenticated and counted with one Redis round trip in all.

Every API response carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
`X-RateLimit-Reset` (seconds until the window resets); over the limit the answer
is 429 with `Retry-After`. When Redis fails the API stays up: the request passes
unchecked, the failure is logged and counted (RATE_LIMIT_DEGRADED).
"""

import logging
import math
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from apps.core.cache.shared import shared_cache
from apps.core.metrics import RATE_LIMIT_DEGRADED, RATE_LIMITED
from apps.core.middleware import HybridMiddleware
from apps.core.tokens import TokenContext, token_context, token_context_async

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
BEARER = "bearer "
PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
NO_TOKEN = "none"  # noqa: S105 - a marker, not a secret
# Where the middleware leaves the bearer token's context for authentication (apps.core.api_auth).
CONTEXT_ATTRIBUTE = "api_token_context"


@dataclass(frozen=True)
class Usage:
    limit: int
    remaining: int
    reset_seconds: int
    exceeded: bool


def bearer_token(request: HttpRequest) -> str | None:
    """The raw bearer token of the request, or None when it sends none."""
    header = request.headers.get("Authorization", "")
    return header[len(BEARER) :].strip() if header[: len(BEARER)].lower() == BEARER else None


def remembered_context(request: HttpRequest) -> TokenContext | str | None:
    """The context the middleware resolved for this request; NO_TOKEN when it resolved none."""
    return getattr(request, CONTEXT_ATTRIBUTE, NO_TOKEN)


def _client_key(request: HttpRequest, context: TokenContext | None) -> str:
    """Who is counted: the bearer token's user, else the session's user, else the client IP.

    An unknown token counts against its IP, so inventing tokens gains no budget.
    """
    if context is not None:
        return f"user:{context.user_id}"
    if bearer_token(request) is None:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return f"user:{user.pk}"
    return f"ip:{request.META.get('REMOTE_ADDR') or 'unknown'}"


def count_request(client: str, *, now: float | None = None) -> Usage:
    """Count one request of `client` in its current window: one Redis round trip. Raises on a Redis failure."""
    count_text, period_letter = settings.API_RATE_LIMIT.split("/")
    limit, period = int(count_text), PERIOD_SECONDS[period_letter]
    now = time.time() if now is None else now
    window = int(now // period)
    cache = shared_cache("default")
    key = cache.make_key(f"rl:{client}:{window}")
    pipe = cache.client.get_client(write=True).pipeline(transaction=False)  # type: ignore[attr-defined]
    pipe.incr(key)
    pipe.expire(key, 2 * period + 1)  # the key names its window; a longer life only outlasts slow clocks
    count = int(pipe.execute()[0])
    return Usage(
        limit=limit,
        remaining=max(0, limit - count),
        reset_seconds=max(0, math.ceil((window + 1) * period - now)),
        exceeded=count > limit,
    )


def _usage_or_none(request: HttpRequest, context: TokenContext | None) -> Usage | None:
    try:
        return count_request(_client_key(request, context))
    except Exception as error:  # any cache failure (django-redis raises its own types): let it through
        logger.warning("rate limiter unavailable, request not counted: %s", error)
        RATE_LIMIT_DEGRADED.inc()
        return None


def _context_or_none(raw: str | None) -> TokenContext | str | None:
    """The token's context; NO_TOKEN when its store failed (authentication then looks again and answers)."""
    try:
        return token_context(raw) if raw else None
    except Exception as error:  # e.g. MongoDB past the request's deadline: count by IP, let auth answer 503
        logger.warning("token context unavailable: %s", error)
        return NO_TOKEN


def _remember(request: HttpRequest, context: TokenContext | str | None) -> TokenContext | None:
    if isinstance(context, str):
        return None
    setattr(request, CONTEXT_ATTRIBUTE, context)
    return context


def api_usage(request: HttpRequest) -> Usage | None:
    """Count this request against its client's window; None when the counter is unavailable (fail open)."""
    context = _remember(request, _context_or_none(bearer_token(request)))
    return _usage_or_none(request, context)


async def api_usage_async(request: HttpRequest) -> Usage | None:
    """`api_usage` without a thread hop when the token's context is cached (the usual case)."""
    raw = bearer_token(request)
    if raw is None and hasattr(request, "user"):
        return await sync_to_async(api_usage)(request)  # a browser session: its user is a database read
    try:
        found: TokenContext | str | None = await token_context_async(raw) if raw else None
    except Exception as error:
        logger.warning("token context unavailable: %s", error)
        found = NO_TOKEN
    return _usage_or_none(request, _remember(request, found))


def _refusal(usage: Usage) -> HttpResponse:
    RATE_LIMITED.inc()
    response = JsonResponse(
        {
            "detail": f"Rate limit exceeded: {settings.API_RATE_LIMIT} requests; retry in {usage.reset_seconds} s.",
            "code": "rate_limited",
        },
        status=429,
    )
    response["Retry-After"] = str(max(1, usage.reset_seconds))
    return response


def _stamp(response: HttpResponse, usage: Usage) -> HttpResponse:
    response["X-RateLimit-Limit"] = str(usage.limit)
    response["X-RateLimit-Remaining"] = str(usage.remaining)
    response["X-RateLimit-Reset"] = str(usage.reset_seconds)
    return response


class ApiRateLimitMiddleware(HybridMiddleware):
    def _call(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            response: HttpResponse = self.get_response(request)
            return response
        usage = api_usage(request)
        if usage is None:
            response = self.get_response(request)
            return response
        if usage.exceeded:
            return _stamp(_refusal(usage), usage)
        return _stamp(self.get_response(request), usage)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            response: HttpResponse = await self.get_response(request)
            return response
        usage = await api_usage_async(request)
        if usage is None:
            response = await self.get_response(request)
            return response
        if usage.exceeded:
            return _stamp(_refusal(usage), usage)
        return _stamp(await self.get_response(request), usage)
