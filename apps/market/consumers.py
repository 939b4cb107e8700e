"""The live market feed, `/ws/market/`: a thin consumer over the process's market hub.

Ticks never pass through the channel layer (DESIGN.md, data flow 2): the hub
reads Redis and writes frames to this socket itself, so the consumer opts out
of the layer and only parses client messages.

Who may connect (docs/decisions/0003-websocket-fanout.md): market data is
public, so anonymous connections are served; a browser brings its session, an
integrator offers the subprotocol `bearer.<api token>` (header
`Sec-WebSocket-Protocol: bearer, bearer.<api token>`), and a token that is given
but unknown is refused at the handshake so a misconfigured integrator finds out
at once. A token in the URL (`?token=`) is refused: URLs end up in access logs
(the server's and every proxy's), headers do not (docs/decisions/0007).
"""

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from apps.core.metrics import WS_CONNECTIONS
from apps.core.tokens import user_for_token
from apps.market.feed.account import AccountSubscriber, account_router
from apps.market.feed.hub import market_hub
from apps.market.feed.session import FeedSession
from apps.market.feed.symbols import ticker_directory
from apps.market.feed.wire import DirectSocket, direct_socket

# No CHANNEL_LAYERS entry has this name, so Channels gives the consumer no layer (no channel, no receive task).
WITHOUT_CHANNEL_LAYER = "market-feed-without-layer"
TOKEN_SUBPROTOCOL_PREFIX = "bearer."  # noqa: S105 - a protocol name, not a secret
BEARER_SUBPROTOCOL = "bearer"  # echoed when offered: a browser fails a handshake that selects none of its offers
# The ASGI server's own `send`, put in the scope by trading/asgi.py's SameSiteHandshake: the hub writes
# every frame through it, below Channels' session middleware, whose `send` wrapper only ever acts on HTTP
# responses but costs each WebSocket frame two lazy-session lookups (a fifth of the feed's send path).
SERVER_SEND = "trading.server_send"
CLOSE_TOKEN_IN_URL = 4400
CLOSE_UNKNOWN_TOKEN = 4401
CLOSE_STALLED = 4408  # the socket took no frame for WS_SEND_STALL_SECONDS (the hub forgot it already)


def offered_token(subprotocols: list[str]) -> str | None:
    """The API token offered as subprotocol `bearer.<token>`, if any."""
    for offer in subprotocols:
        if offer.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return offer.removeprefix(TOKEN_SUBPROTOCOL_PREFIX)
    return None


class MarketFeedConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = WITHOUT_CHANNEL_LAYER
    session: FeedSession | None = None
    account: AccountSubscriber | None = None  # a signed-in connection's own events (feed/account.py)
    _server_send: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # A handler that raises ends the consumer without `disconnect`: forget the connection anyway, or the
        # hub keeps its watcher and subscriptions (and the connection gauge counts it) for ever.
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._end_session()

    async def connect(self) -> None:
        if "token" in parse_qs(self.scope.get("query_string", b"").decode(errors="replace")):
            await self.close(code=CLOSE_TOKEN_IN_URL)
            return
        offers = list(self.scope.get("subprotocols") or [])
        token = offered_token(offers)
        if token is not None:
            user = await database_sync_to_async(user_for_token)(token)
            if user is None:
                await self.close(code=CLOSE_UNKNOWN_TOKEN)
                return
            self.scope["user"] = user
        self._server_send = self.scope.get(SERVER_SEND, self.base_send)
        await self.accept(subprotocol=BEARER_SUBPROTOCOL if BEARER_SUBPROTOCOL in offers else None)
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            self.account = await account_router().attach(self, user.pk)
        resume = None if self.account is None else self._resume_account
        self.session = FeedSession(hub=market_hub(), connection=self, tickers=ticker_directory(), resume_account=resume)
        WS_CONNECTIONS.inc()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session is None:
            return
        reply = await self.session.handle(text_data)
        for frame in reply.frames:
            await self.send(text_data=frame)
        if reply.close_code is not None:
            await self.close(code=reply.close_code)

    async def disconnect(self, code: int) -> None:
        await self._end_session()

    def _resume_account(self, after: int) -> None:
        if self.account is not None:
            account_router().resume(self.account, after)

    async def _end_session(self) -> None:
        account, self.account = self.account, None
        if account is not None:
            account_router().detach(account)
        session, self.session = self.session, None
        if session is not None:
            WS_CONNECTIONS.dec()
            await session.end()

    async def send_frame(self, text: str) -> None:
        """The hub's write path: straight to the server, skipping the consumer's and the middleware's layers."""
        await (self._server_send or self.base_send)({"type": "websocket.send", "text": text})

    def direct_socket(self) -> DirectSocket | None:
        """The hub's fast path: shared frames written straight to uvicorn's transport (feed/wire.py), if served so."""
        return direct_socket(self._server_send)

    async def close_stalled(self) -> None:
        await self.close(code=CLOSE_STALLED)
