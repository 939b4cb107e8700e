"""API rate limit (Property 12): API_RATE_LIMIT requests per window per trader, per IP when anonymous.

One middleware for every /api/ path, counted in Redis by django-ratelimit
(through the default cache, django-redis). Every API response carries
`X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds
until the window resets); over the limit the answer is 429 with `Retry-After`.
When Redis fails the API stays up: the request passes unchecked, the failure is
logged and counted (RATE_LIMIT_DEGRADED).
"""

import hashlib
import logging
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_ratelimit.core import get_usage

from apps.core.middleware import HybridMiddleware
from apps.core.tokens import user_for_token
from apps.monitoring.metrics import RATE_LIMIT_DEGRADED, RATE_LIMITED

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
GROUP = "api"
BEARER = "bearer "
OWNER_PREFIX = "rl:owner:"
OWNER_SECONDS = 60


@dataclass(frozen=True)
class Usage:
    limit: int
    remaining: int
    reset_seconds: int
    exceeded: bool


def _token_owner(raw: str) -> str:
    """The id of the user a bearer token belongs to ("" for none), remembered for one window.

    Only to know whom to count: authentication itself still checks the token on every
    request, so a token revoked mid-window is refused at once and merely keeps being
    counted for its owner until the window ends. Spares a database lookup per request.
    """
    memo = f"{OWNER_PREFIX}{hashlib.sha256(raw.encode()).hexdigest()}"
    owner = cache.get(memo)
    if owner is None:
        user = user_for_token(raw)
        owner = str(user.pk) if user is not None else ""
        cache.set(memo, owner, OWNER_SECONDS)
    return str(owner)


def _client_key(request: HttpRequest) -> str:
    """Who is counted: the bearer token's user, else the session's user, else the client IP.

    An unknown token counts against its IP, so inventing tokens gains no budget.
    """
    header = request.headers.get("Authorization", "")
    if header[: len(BEARER)].lower() == BEARER:
        owner = _token_owner(header[len(BEARER) :].strip())
        if owner:
            return f"user:{owner}"
    elif request.user.is_authenticated:
        return f"user:{request.user.pk}"
    return f"ip:{request.META.get('REMOTE_ADDR') or 'unknown'}"


def api_usage(request: HttpRequest) -> Usage | None:
    """Count this request against its client's window; None when the counter is unavailable (fail open)."""
    try:
        client = _client_key(request)
        usage = get_usage(
            request, group=GROUP, key=lambda _group, _request: client, rate=settings.API_RATE_LIMIT, increment=True
        )
    except Exception as error:  # any cache or lookup failure (django-redis raises its own types): let it through
        logger.warning("rate limiter unavailable, request not counted: %s", error)
        RATE_LIMIT_DEGRADED.inc()
        return None
    if usage is None or usage["limit"] == 0:  # disabled, or django-ratelimit's own failure answer
        RATE_LIMIT_DEGRADED.inc()
        return None
    return Usage(
        limit=usage["limit"],
        remaining=max(0, usage["limit"] - usage["count"]),
        reset_seconds=max(0, usage["time_left"]),
        exceeded=usage["should_limit"],
    )


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
        usage = await sync_to_async(api_usage)(request)
        if usage is None:
            response = await self.get_response(request)
            return response
        if usage.exceeded:
            return _stamp(_refusal(usage), usage)
        return _stamp(await self.get_response(request), usage)
