"""API authentication: bearer tokens for integrators, the session (with CSRF) for the browser.

`API_AUTH` serves sync operations (run in a thread); `ASYNC_API_AUTH` the async hot reads
on the event loop (ninja awaits an auth whose `is_async` is set): a cached token costs no
thread hop and no I/O there (the rate limiter already resolved it), and a browser session
loads its user with `request.auser()`. The same classes in both, so OpenAPI names one
scheme of each.
"""

from collections.abc import Awaitable
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from apps.core.ratelimit import NO_TOKEN, bearer_token, remembered_context
from apps.core.tokens import TokenContext, token_context, token_context_async


def _user_of(request: HttpRequest, context: TokenContext | str | None) -> object | None:
    if context is None or isinstance(context, str):
        return None
    user = context.user()
    request.user = user
    return user


class BearerToken(HttpBearer):
    def __init__(self, *, on_event_loop: bool = False) -> None:
        super().__init__()
        self.is_async = on_event_loop

    def __call__(self, request: HttpRequest) -> Any:
        return self._acall(request) if self.is_async else super().__call__(request)

    def authenticate(self, request: HttpRequest, token: str) -> object | None:
        # The rate limiter already resolved this request's token (from the cache): reuse it.
        context = remembered_context(request)
        if context == NO_TOKEN:
            context = token_context(token)
        return _user_of(request, context)

    async def _acall(self, request: HttpRequest) -> object | None:
        raw = bearer_token(request)
        if raw is None:
            return None
        context = remembered_context(request)
        if context == NO_TOKEN:
            context = await token_context_async(raw)
        return _user_of(request, context)


class LeanSessionAuth(SessionAuth):
    """Session auth that also works on the lean bearer path, which has no session middleware."""

    def __init__(self, *, on_event_loop: bool = False) -> None:
        super().__init__()
        self.is_async = on_event_loop

    def __call__(self, request: HttpRequest) -> Any | Awaitable[Any]:
        return self._acall(request) if self.is_async else super().__call__(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> object | None:
        if not hasattr(request, "user"):
            request.user = AnonymousUser()
        return super().authenticate(request, key)

    async def _acall(self, request: HttpRequest) -> object | None:
        self._get_key(request)  # the CSRF check of an unsafe method (raises 403)
        if not hasattr(request, "auser"):  # the lean bearer path has no session
            return None
        user = await request.auser()
        if not user.is_authenticated:
            return None
        request.user = user
        return user


API_AUTH = [BearerToken(), LeanSessionAuth()]
ASYNC_API_AUTH = [BearerToken(on_event_loop=True), LeanSessionAuth(on_event_loop=True)]
