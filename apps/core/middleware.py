"""Request id: taken from X-Request-ID when a proxy sent a sane one, else made; echoed back."""

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.middleware.security import SecurityMiddleware as DjangoSecurityMiddleware

from apps.core.logs import request_id_var

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _request_id(request: HttpRequest) -> str:
    offered = request.headers.get("X-Request-ID", "")
    return offered if _SAFE_ID.match(offered) else uuid.uuid4().hex


class HybridMiddleware:
    """A middleware that runs natively in both a sync (WSGI, tests) and an async (ASGI) stack.

    Django would otherwise wrap a sync-only middleware in a thread hop on every ASGI request.
    Subclasses implement `_call` (sync) and `_acall` (async) with the same behaviour.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        return self._acall(request) if self.is_async else self._call(request)

    def _call(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError


class RequestIdMiddleware(HybridMiddleware):
    def _call(self, request: HttpRequest) -> HttpResponse:
        token = request_id_var.set(_request_id(request))
        try:
            response: HttpResponse = self.get_response(request)
            response["X-Request-ID"] = request_id_var.get()
            return response
        finally:
            request_id_var.reset(token)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        token = request_id_var.set(_request_id(request))
        try:
            response: HttpResponse = await self.get_response(request)
            response["X-Request-ID"] = request_id_var.get()
            return response
        finally:
            request_id_var.reset(token)


class AllowedHostMiddleware(HybridMiddleware):
    """Check the Host header against ALLOWED_HOSTS (CommonMiddleware's job on the full stack) without a thread hop.

    `request.get_host()` raises DisallowedHost, which Django answers with 400.
    """

    def _call(self, request: HttpRequest) -> HttpResponse:
        request.get_host()
        response: HttpResponse = self.get_response(request)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        request.get_host()
        response: HttpResponse = await self.get_response(request)
        return response


class SecurityMiddleware(HybridMiddleware):
    """Django's SecurityMiddleware (HTTPS redirect, HSTS, nosniff, Referrer-Policy, Cross-Origin-Opener-Policy)
    without its thread hops: under ASGI a MiddlewareMixin runs process_request and process_response each
    through sync_to_async, and the first such call makes the request a thread of its own (asgiref's
    per-request executor), about a tenth of the web's CPU on the lean API stack. Both are pure header work."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        self.django = DjangoSecurityMiddleware(get_response)

    def _call(self, request: HttpRequest) -> HttpResponse:
        response = self.django.process_request(request) or self.get_response(request)
        return self.django.process_response(request, response)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        response = self.django.process_request(request) or await self.get_response(request)
        return self.django.process_response(request, response)
