"""WebSocket URL routes; each app that serves a socket adds its route here."""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
