"""One HTTP request through the project's real ASGI application (admission, routing, the lean API stack)."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator


def asgi_get(path: str, token: str, host: bytes = b"127.0.0.1") -> tuple[int, dict[bytes, bytes], bytes]:
    """GET `path` (with its query string) as a bearer client: (status, lower-cased headers, body)."""
    from trading.asgi import application

    route, _, query = path.partition("?")

    async def call() -> tuple[int, dict[bytes, bytes], bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": route,
            "raw_path": route.encode(),
            "query_string": query.encode(),
            "headers": [(b"host", host), (b"authorization", f"Bearer {token}".encode())],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
        }
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request", "body": b""})
        start = await communicator.receive_output(5)
        body = await communicator.receive_output(5)
        return start["status"], {k.lower(): v for k, v in start["headers"]}, body["body"]

    return async_to_sync(call)()
