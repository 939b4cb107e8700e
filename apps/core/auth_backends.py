"""Login throttling (django-axes) as an authentication backend."""

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' lockout check, skipped for a call without a request.

    Every login form (ours, the admin's) passes its request; only code that
    authenticates directly (Django's test client `login()`, a shell) does not,
    and axes' backend would refuse it outright. Without a request there is no
    client to throttle, so the next backend decides alone.
    """

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
