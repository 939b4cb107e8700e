"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import os

from django.core.asgi import get_asgi_application

from trading.supervision import stop_with_parent

stop_with_parent()  # a server worker never outlives its supervised master (trading/supervision.py)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trading.settings")
# Django must be set up before anything imports models (Channels' recipe).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from trading.routing import websocket_urlpatterns  # noqa: E402


class BrowserOriginValidator(OriginValidator):
    """Check Origin against ALLOWED_HOSTS when there is one; allow a handshake without it.

    Browsers always send Origin on a WebSocket handshake, so a cross-site page can
    never ride a trader's session cookie. Integrators' clients (bearer `?token=`)
    usually send no Origin, and Channels' stock validator would refuse them.
    """

    def valid_origin(self, parsed_origin: object) -> bool:
        return parsed_origin is None or bool(super().valid_origin(parsed_origin))


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": BrowserOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), settings.ALLOWED_HOSTS
        ),
    }
)
