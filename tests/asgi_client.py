"""One HTTP request through the project's real ASGI application (admission, routing, the lean API stack)."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator


async def asgi_request(
    method: str, path: str, token: str, body: Any = None, host: bytes = b"127.0.0.1"
) -> tuple[int, dict[bytes, bytes], bytes]:
    """`method path` (with its query string, a JSON body if given) as a bearer client: (status, lower-cased
    headers, body)."""
    from trading.asgi import application

    route, _, query = path.partition("?")
    headers = [(b"host", host), (b"authorization", f"Bearer {token}".encode())]
    payload = b"" if body is None else json.dumps(body).encode()
    if body is not None:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": route,
        "raw_path": route.encode(),
        "query_string": query.encode(),
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": payload})
    start = await communicator.receive_output(10)
    answer = await communicator.receive_output(10)
    return start["status"], {k.lower(): v for k, v in start["headers"]}, answer["body"]


def asgi_get(path: str, token: str, host: bytes = b"127.0.0.1") -> tuple[int, dict[bytes, bytes], bytes]:
    """GET `path` (with its query string) as a bearer client: (status, lower-cased headers, body)."""
    return async_to_sync(asgi_request)("GET", path, token, host=host)


def asgi_post(path: str, token: str, body: Any) -> tuple[int, dict[bytes, bytes], bytes]:
    """POST `body` as JSON to `path` as a bearer client: (status, lower-cased headers, body)."""
    return async_to_sync(asgi_request)("POST", path, token, body)
