"""API authentication: bearer tokens for integrators, the session (with CSRF) for the browser."""

from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from apps.core.tokens import user_for_token


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> object | None:
        user = user_for_token(token)
        if user is not None:
            request.user = user
        return user


API_AUTH = [BearerToken(), SessionAuth()]
