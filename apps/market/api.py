"""Market endpoints: symbols with latest quotes, one symbol, its tick history (keyset pages)."""

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Field, Path, Query, Router, Schema
from ninja.errors import HttpError
from pydantic import field_validator

from apps.core.api_auth import ASYNC_API_AUTH
from apps.core.cache import read_cached
from apps.core.schemas import shaped_json
from apps.market import selectors
from apps.market.models import Sector, Symbol

router = Router(tags=["market"])

MAX_PAGE_SIZE = 100  # Property 3
TICKER = Path(..., pattern=r"^[A-Za-z0-9.\-]{1,10}$", description="ticker, e.g. ACME")


class QuoteOut(Schema):
    price: float
    previous_close: float
    change: float
    change_percent: float
    volume: int
    timestamp: int = Field(description="server time of the tick, ms since the epoch")


class SymbolOut(Schema):
    ticker: str
    name: str
    sector: str
    active: bool
    quote: QuoteOut | None = Field(description="null until the symbol has ticked (or while no price is known)")


class PaginationOut(Schema):
    page: int
    limit: int
    total: int
    hasNext: bool
    hasPrev: bool


class SymbolListOut(Schema):
    data: list[SymbolOut]
    pagination: PaginationOut


class SymbolListQuery(Schema):
    page: int = Field(1, ge=1, le=100_000)
    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE, description=f"at most {MAX_PAGE_SIZE}")
    sector: Sector | None = None
    search: str | None = Field(None, min_length=1, max_length=50, description="part of a ticker or name")


class HistoryPointOut(Schema):
    tick_id: str
    price: float
    volume: int
    timestamp: int = Field(description="ms since the epoch")


class HistoryOut(Schema):
    symbol: str
    data: list[HistoryPointOut] = Field(description="newest first")
    nextCursor: str | None = Field(description="pass as `before` for the next (older) page; null on the last page")


class HistoryQuery(Schema):
    limit: int = Field(100, ge=1, le=MAX_PAGE_SIZE, description=f"at most {MAX_PAGE_SIZE}")
    before: str | None = Field(None, max_length=200, description="the nextCursor of the previous page")

    @field_validator("before")
    @classmethod
    def before_is_a_cursor(cls, value: str | None) -> str | None:
        if value is not None:
            selectors.HistoryCursor.decode(value)  # ValueError -> 422 naming `before`
        return value


QUOTE_FIELDS = tuple(QuoteOut.model_fields)


def symbol_json(symbol: selectors.Listing, quote: dict[str, Any] | None) -> dict[str, Any]:
    """`SymbolOut` as plain JSON values (the listing's fast path, see apps.core.schemas.shaped_json)."""
    return {
        "ticker": symbol.ticker,
        "name": symbol.name,
        "sector": symbol.sector,
        "active": symbol.active,
        "quote": {name: quote[name] for name in QUOTE_FIELDS} if quote else None,
    }


def symbol_out(symbol: Symbol | selectors.Listing, quote: dict[str, object] | None) -> SymbolOut:
    return SymbolOut(
        ticker=symbol.ticker,
        name=symbol.name,
        sector=symbol.sector,
        active=symbol.active,
        quote=QuoteOut.model_validate(quote) if quote else None,
    )


def _known_symbol(ticker: str) -> Symbol:
    symbol = selectors.symbol_by_ticker(ticker.upper())
    if symbol is None:
        raise HttpError(404, f"Unknown symbol {ticker.upper()!r}")
    return symbol


@router.get(
    "",
    response=SymbolListOut,
    auth=ASYNC_API_AUTH,
    summary="Symbols with latest quotes, by ticker, at most 100 a page",
)
async def symbol_list(request: HttpRequest, filters: Query[SymbolListQuery]) -> HttpResponse:
    found = await read_cached(
        selectors.symbol_page, page=filters.page, limit=filters.limit, sector=filters.sector, search=filters.search
    )
    pagination = {
        "page": filters.page,
        "limit": filters.limit,
        "total": found.total,
        "hasNext": filters.page * filters.limit < found.total,
        "hasPrev": filters.page > 1,
    }
    return shaped_json(
        {"data": [symbol_json(s, found.quotes.get(s.ticker)) for s in found.symbols], "pagination": pagination}
    )


@router.get("/{ticker}", response=SymbolOut, summary="One symbol and its latest quote")
def symbol_detail(request: HttpRequest, ticker: str = TICKER) -> SymbolOut:
    symbol = _known_symbol(ticker)
    return symbol_out(symbol, selectors.symbol_quote(symbol.ticker))


@router.get("/{ticker}/history", response=HistoryOut, summary="Ticks newest first, keyset pages via `before`")
def symbol_history(request: HttpRequest, params: Query[HistoryQuery], ticker: str = TICKER) -> HistoryOut:
    symbol = _known_symbol(ticker)
    before = selectors.HistoryCursor.decode(params.before) if params.before else None
    page = selectors.tick_history(symbol=symbol.ticker, limit=params.limit, before=before)
    return HistoryOut(
        symbol=symbol.ticker,
        data=[HistoryPointOut.model_validate(point) for point in page.points],
        nextCursor=page.next_cursor.encode() if page.next_cursor else None,
    )
