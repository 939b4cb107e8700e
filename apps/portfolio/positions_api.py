"""Closing positions in the JSON API: one position (all, a quantity or a percentage) or all of them.

Each close is one `close` command to the order engine: a market sell decided against the engine's own
holdings, exactly once per client_order_id, with the symbol's open orders cancelled in the same commit
when `cancel_orders` is set.
"""

import asyncio
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from ninja import Field, Query, Router, Schema, Status

from apps.core.api_auth import ASYNC_API_AUTH
from apps.core.cache import read_cached
from apps.portfolio.api import ErrorOut, refused
from apps.portfolio.schemas import OrderOut
from apps.portfolio.selectors import held_symbols, trader_ref
from apps.portfolio.services import (
    CLIENT_ORDER_ID_MAX,
    QUANTITY_MAX,
    OrderRejected,
    close_asked,
    close_position_async,
)

router = Router(tags=["trading"])


class CloseAllOptions(Schema):
    cancel_orders: bool = Field(
        False, description="First cancel the symbol's open orders (resting sells hold shares that cannot be sold)"
    )


class CloseOptions(CloseAllOptions):
    quantity: int | None = Field(None, ge=1, le=QUANTITY_MAX, description="Shares to sell (default: all)")
    percent: int | None = Field(None, ge=1, le=100, description="Or this share of the position, rounded down")
    client_order_id: str | None = Field(
        None, min_length=1, max_length=CLIENT_ORDER_ID_MAX, description="Idempotency key of the sell order"
    )


class ClosedOut(Schema):
    symbol: str
    status: int = Field(description="201: sold; otherwise the refusal's HTTP status")
    order: OrderOut | None = None
    code: str | None = None
    detail: str | None = None


class ClosedAllOut(Schema):
    closed: list[ClosedOut]


@router.delete(
    "/positions/{symbol}",
    response={200: OrderOut, 201: OrderOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut, 503: ErrorOut},
    auth=ASYNC_API_AUTH,
    summary="Close a position: a market sell of all of it, `quantity` shares or `percent` of it",
)
async def position_close(
    request: HttpRequest, symbol: str, options: Query[CloseOptions], response: HttpResponse
) -> Status[Any]:
    user = cast(User, request.user)
    try:
        asked = await read_cached(close_asked, symbol=symbol, **options.dict())  # the symbol from the cached directory
        trader = await read_cached(trader_ref, user)
        result = await close_position_async(account_id=trader.pk, user_id=user.pk, asked=asked)
    except OrderRejected as rejection:
        return refused(rejection, response)
    return Status(201 if result.created else 200, OrderOut.of(result.order))


@router.delete(
    "/positions",
    response={200: ClosedAllOut, 503: ErrorOut},
    auth=ASYNC_API_AUTH,
    summary="Close every position (one market sell each); each symbol's outcome is listed",
)
async def positions_close_all(request: HttpRequest, options: Query[CloseAllOptions]) -> ClosedAllOut:
    user = cast(User, request.user)
    trader = await read_cached(trader_ref, user)

    async def close(symbol: str) -> ClosedOut:
        try:
            asked = await read_cached(
                close_asked,
                symbol=symbol,
                quantity=None,
                percent=None,
                cancel_orders=options.cancel_orders,
                client_order_id=None,
            )
            result = await close_position_async(account_id=trader.pk, user_id=user.pk, asked=asked)
        except OrderRejected as rejection:
            return ClosedOut(symbol=symbol, status=rejection.status, code=rejection.code, detail=rejection.message)
        return ClosedOut(symbol=symbol, status=201, order=OrderOut.of(result.order))

    symbols = await sync_to_async(held_symbols)(trader.pk)
    return ClosedAllOut(closed=list(await asyncio.gather(*(close(symbol) for symbol in symbols))))
