"""WebSocket URL routes; each app that serves a socket adds its route here."""

from django.urls import URLPattern, path

from apps.market.consumers import MarketFeedConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/market/", MarketFeedConsumer.as_asgi()),
]
