"""Which tickers exist, for validating subscriptions: the Symbol table, cached per process.

A subscription is checked on every subscribe message; reading MongoDB each time
would put the database on the WebSocket path. The set is reloaded every
REFRESH_SECONDS, and at most once a second sooner when a ticker is not found
(a symbol listed a moment ago), so unknown-ticker spam cannot hammer the database.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from channels.db import database_sync_to_async

from apps.market.models import Symbol

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 30.0
MISS_REFRESH_SECONDS = 1.0


class TickersUnavailable(Exception):
    pass


@database_sync_to_async
def _listed_tickers() -> frozenset[str]:
    return frozenset(Symbol.objects.values_list("ticker", flat=True))


class TickerDirectory:
    def __init__(
        self,
        load: Callable[[], Awaitable[frozenset[str]]] = _listed_tickers,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._clock = clock
        self._tickers: frozenset[str] | None = None
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def unknown(self, symbols: Iterable[str]) -> list[str]:
        """The symbols that are not listed, in the order given; TickersUnavailable if none were ever loaded."""
        wanted = list(dict.fromkeys(symbols))
        if self._tickers is None or self._clock() - self._loaded_at > REFRESH_SECONDS:
            await self._refresh()
        missing = [s for s in wanted if s not in self._tickers_or_raise()]
        if missing and self._clock() - self._loaded_at > MISS_REFRESH_SECONDS:
            await self._refresh()
            missing = [s for s in missing if s not in self._tickers_or_raise()]
        return missing

    def _tickers_or_raise(self) -> frozenset[str]:
        if self._tickers is None:
            raise TickersUnavailable
        return self._tickers

    async def _refresh(self) -> None:
        async with self._lock:
            if self._clock() - self._loaded_at <= MISS_REFRESH_SECONDS:
                return  # another connection refreshed while this one waited
            try:
                self._tickers = await self._load()
            except Exception:  # keep serving the last known set while the database is away
                logger.warning("feed: could not load tickers; keeping the last known set", exc_info=True)
            self._loaded_at = self._clock()


_directories: dict[asyncio.AbstractEventLoop, TickerDirectory] = {}


def ticker_directory() -> TickerDirectory:
    """The directory of the running event loop (its lock belongs to that loop)."""
    loop = asyncio.get_running_loop()
    directory = _directories.get(loop)
    if directory is None:
        _directories.clear()  # only one loop serves at a time; drop finished ones (tests)
        directory = _directories[loop] = TickerDirectory()
    return directory
