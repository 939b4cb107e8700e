"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import gc
import os

from django.core.asgi import get_asgi_application

from trading.supervision import stop_with_parent

stop_with_parent()  # a server worker never outlives its supervised master (trading/supervision.py)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trading.settings")
# Django must be set up before anything imports models (Channels' recipe).
django_asgi_app = get_asgi_application()

from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import WebsocketDenier  # noqa: E402
from django.conf import settings  # noqa: E402
from django.http.request import split_domain_port, validate_host  # noqa: E402

from apps.market.consumers import SERVER_SEND  # noqa: E402
from trading.handlers import http_application  # noqa: E402
from trading.routing import websocket_urlpatterns  # noqa: E402

DEFAULT_PORTS = {"http": 80, "https": 443}
GC_YOUNG_THRESHOLD = 50_000


def _origin_key(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin with default ports filled in; None when it is not one."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or port is None:
        return None
    return parts.scheme, parts.hostname, port


def _scheme(scope: dict[str, Any], headers: dict[bytes, str]) -> str:
    """The page scheme this handshake belongs to: the server's own (uvicorn applies trusted proxies),
    or SECURE_PROXY_SSL_HEADER's verdict as HttpRequest.is_secure() would give it."""
    if scope.get("scheme") in {"wss", "https"}:
        return "https"
    if settings.SECURE_PROXY_SSL_HEADER:
        header, value = settings.SECURE_PROXY_SSL_HEADER
        name = header.removeprefix("HTTP_").lower().replace("_", "-").encode()
        if headers.get(name, "").split(",")[0].strip() == value:
            return "https"
    return "http"


def handshake_allowed(scope: dict[str, Any]) -> bool:
    """Host in ALLOWED_HOSTS, as for HTTP; an Origin, when sent, of this very site (scheme, host and port)
    or listed in CSRF_TRUSTED_ORIGINS.

    Browsers always send Origin on a WebSocket handshake, so a page of another site (or
    of another port of this host) can never ride a trader's session cookie. Integrators'
    clients usually send no Origin and are served (the feed's data is public).
    """
    headers = {name: value.decode("latin1") for name, value in scope.get("headers", [])}
    host = headers.get(b"host", "")
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    origin = headers.get(b"origin")
    if origin is None:
        return True
    claimed = _origin_key(origin)
    own = _origin_key(f"{_scheme(scope, headers)}://{host}")
    trusted = {_origin_key(trusted) for trusted in settings.CSRF_TRUSTED_ORIGINS}
    return claimed is not None and (claimed == own or claimed in trusted)


class SameSiteHandshake:
    """Refuse (403) a WebSocket handshake that `handshake_allowed` refuses."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if handshake_allowed(scope):
            return await self.application({**scope, SERVER_SEND: send}, receive, send)
        return await WebsocketDenier()(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_application(django_asgi_app),
        "websocket": SameSiteHandshake(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Start-up is over: Django, the URLconf and every imported module (~137 000 tracked objects) live as long as
# the process. Frozen, the collector stops rescanning them at each full collection (one took 150 ms on the
# shared 2-core machine before, ~0 after), which otherwise pauses every WebSocket send (issue 17).
gc.freeze()
# A young-generation collection every 50 000 net allocations instead of 700 (issue 17). A send pass to
# thousands of connections allocates and frees far more than 700 objects; at 700 a collection ran every few
# sends and promoted the pass's short-lived objects, so full collections (every tracked object of every
# connection: 0.4-0.9 s each at 10 000 clients on the loaded machine) came every few seconds. At 50 000 the
# pass's objects die by reference counting first: no collection at all ran in a 20 s window at 10 000 clients.
gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
