"""One WebSocket connection's side of the feed protocol: validate a message, apply it, answer it.

The consumer stays thin: it hands each text frame here and sends what comes back.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from apps.core.clock import now_ms
from apps.core.metrics import WS_ERRORS
from apps.market.feed.frames import error_frame, subscriptions_frames
from apps.market.feed.hub import FeedConnection, MarketHub, SubscriptionUnavailable
from apps.market.feed.protocol import (
    MAX_SYMBOLS_PER_CONNECTION,
    AccountResume,
    FeedError,
    MessageRateLimiter,
    Ping,
    Subscribe,
    parse_client_message,
)
from apps.market.feed.symbols import TickerDirectory, TickersUnavailable

logger = logging.getLogger(__name__)

MAX_NAMED_SYMBOLS = 20


@dataclass
class Reply:
    frames: list[str] = field(default_factory=list)
    close_code: int | None = None  # 1008 (policy violation) on sustained abuse


class FeedSession:
    def __init__(
        self,
        *,
        hub: MarketHub,
        connection: FeedConnection,
        tickers: TickerDirectory,
        clock: Callable[[], float] = time.monotonic,
        resume_account: Callable[[int], None] | None = None,
    ) -> None:
        self._hub = hub
        self._resume_account = resume_account  # None: an anonymous connection, which has no account events
        self._connection = connection
        self._tickers = tickers
        self._limiter = MessageRateLimiter(clock)
        hub.attach(connection)

    async def handle(self, text: str | None) -> Reply:
        if not self._limiter.allow():
            if self._limiter.abusive:
                return Reply(close_code=1008)
            return self._error(FeedError("rate_limited", "at most 10 messages per second; this one was ignored"))
        try:
            message = parse_client_message(text)
            if isinstance(message, AccountResume):
                return self._resume(message.after)
            if isinstance(message, Subscribe):
                await self._subscribe(message.symbols)
                kind = "subscribed"
            elif isinstance(message, Ping):
                kind = "pong"
            else:
                await self._hub.unwatch(self._connection, message.symbols)
                kind = "unsubscribed"
        except FeedError as error:
            return self._error(error)
        except Exception:  # a bug must cost this message, not the connection (and never leak it in the hub)
            logger.exception("feed: a client message could not be handled")
            return self._error(FeedError("internal_error", "this message could not be handled; try again"))
        symbols = sorted(self._hub.symbols_of(self._connection))
        return Reply(subscriptions_frames(kind, symbols, timestamp=now_ms()))

    async def _subscribe(self, symbols: list[str]) -> None:
        try:
            unknown = await self._tickers.unknown(symbols)
        except TickersUnavailable as error:
            raise FeedError("unavailable", "the symbol list cannot be read right now; try again") from error
        if unknown:
            named = ", ".join(unknown[:MAX_NAMED_SYMBOLS]) + (" ..." if len(unknown) > MAX_NAMED_SYMBOLS else "")
            raise FeedError("unknown_symbol", f"unknown symbols: {named}")
        current = self._hub.symbols_of(self._connection)
        if len(current | set(symbols)) > MAX_SYMBOLS_PER_CONNECTION:
            raise FeedError(
                "too_many_symbols",
                f"symbols: at most {MAX_SYMBOLS_PER_CONNECTION} per connection ({len(current)} already subscribed)",
            )
        try:
            await self._hub.watch(self._connection, symbols)
        except SubscriptionUnavailable as error:
            raise FeedError("unavailable", "the live feed cannot subscribe right now; try again") from error

    def _resume(self, after: int) -> Reply:
        """Its answer is the events themselves, sent by the account router in sequence."""
        if self._resume_account is None:
            raise FeedError("not_authenticated", "account_resume: sign in (session or bearer token) for account events")
        self._resume_account(after)
        return Reply()

    def _error(self, error: FeedError) -> Reply:
        WS_ERRORS.labels(code=error.code).inc()
        return Reply([error_frame(error.code, error.message, timestamp=now_ms())])

    async def end(self) -> None:
        await self._hub.detach(self._connection)
