"""API authentication: bearer tokens for integrators, the session (with CSRF) for the browser."""

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from apps.core.ratelimit import NO_TOKEN, remembered_context
from apps.core.tokens import token_context


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> object | None:
        # The rate limiter already resolved this request's token (from the cache): reuse it.
        context = remembered_context(request)
        if context == NO_TOKEN:
            context = token_context(token)
        if context is None or isinstance(context, str):
            return None
        user = context.user()
        request.user = user
        return user


class LeanSessionAuth(SessionAuth):
    """Session auth that also works on the lean bearer path, which has no session middleware."""

    def authenticate(self, request: HttpRequest, key: str | None) -> object | None:
        if not hasattr(request, "user"):
            request.user = AnonymousUser()
        return super().authenticate(request, key)


API_AUTH = [BearerToken(), LeanSessionAuth()]
