"""Orders, portfolio and invoices in the JSON API. Views parse, call one service or selector, shape."""

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, cast

from asgiref.sync import sync_to_async
from bson import ObjectId
from bson.errors import InvalidId
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from ninja import Field, Query, Router, Schema, Status
from pydantic import StrictInt

from apps.core.api_auth import ASYNC_API_AUTH
from apps.core.cache import read_cached
from apps.core.clock import epoch_ms, moment
from apps.core.cursor import KeysetCursor
from apps.core.metrics import ORDERS
from apps.core.schemas import InputSchema
from apps.portfolio.models import Invoice, Order, Trader
from apps.portfolio.order_terms import PRICE_MAX
from apps.portfolio.schemas import OrderOut, PortfolioOut, trade_fields
from apps.portfolio.selectors import (
    ORDER_PAGE_MAX,
    invoice_for_order,
    order_get,
    order_list,
    portfolio_of,
    recent_orders,
    trader_ref,
)
from apps.portfolio.services import (
    CLIENT_ORDER_ID_MAX,
    QUANTITY_MAX,
    OrderRejected,
    OrderTerms,
    cancel_all_async,
    invoice_pdf,
    order_asked,
    order_cancel_async,
    place_order_async,
)
from apps.portfolio.verification import invoice_verify

router = Router(tags=["trading"])


class ErrorOut(Schema):
    detail: str
    code: str
    field: str | None = None


class OrderIn(InputSchema):
    symbol: str = Field(..., min_length=1, max_length=10, description="Ticker, e.g. 'ACME'")
    side: Literal["buy", "sell"]
    quantity: StrictInt = Field(..., ge=1, le=QUANTITY_MAX)
    client_order_id: str | None = Field(
        None,
        min_length=1,
        max_length=CLIENT_ORDER_ID_MAX,
        description="Your idempotency key: the same id again returns the original order. Generated when absent.",
    )
    type: Literal["market", "limit", "stop", "stop_limit"] = Field(
        "market",
        description="market: now at the latest price; limit: at limit_price or better; stop: a market order once "
        "the price reaches stop_price; stop_limit: a limit order at limit_price once the price reaches stop_price",
    )
    limit_price: Decimal | None = Field(
        None, gt=0, le=PRICE_MAX, decimal_places=2, description="Required for limit and stop_limit, else refused"
    )
    stop_price: Decimal | None = Field(
        None, gt=0, le=PRICE_MAX, decimal_places=2, description="Required for stop and stop_limit, else refused"
    )
    time_in_force: Literal["day", "gtc", "ioc", "fok"] = Field(
        "day",
        description="day: a resting order expires after ORDER_DAY_SECONDS; gtc: rests until filled or cancelled; "
        "ioc (immediate or cancel) and fok (fill or kill): market and limit orders only, filled when placed or "
        "else cancelled (reason ioc_unfilled / fok_unfilled) after the buying-power and shares checks a resting "
        "order gets, never resting; until partial fills exist both fill the whole quantity or nothing",
    )


class OrderPage(Schema):
    data: list[OrderOut]
    nextCursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page.")


class OrderFilters(Schema):
    limit: int = Field(50, ge=1, le=ORDER_PAGE_MAX)
    cursor: str | None = Field(None, max_length=100)
    symbol: str | None = Field(None, min_length=1, max_length=10)
    side: Literal["buy", "sell"] | None = None
    status: Literal["open", "filled", "cancelled", "expired"] | None = None


class CancelAllFilters(Schema):
    symbol: str | None = Field(None, min_length=1, max_length=10, description="Only this symbol's open orders")


class CancelledOut(Schema):
    cancelled: list[OrderOut] = Field(description="The orders this request cancelled, now `cancelled`")


class CancelConflictOut(ErrorOut):
    order: OrderOut


class CertifiedTrade(Schema):
    number: int
    trader: str
    trade_id: str
    symbol: str
    side: str
    quantity: int
    price: Decimal
    amount: Decimal
    executed_at: datetime
    invoice_status: str


class VerificationOut(Schema):
    authentic: bool
    verdict: Literal["authentic", "tampered", "unknown"]
    detail: str
    certifies: CertifiedTrade | None = None


def _trader(request: HttpRequest) -> Trader:
    return trader_ref(cast(User, request.user))  # the API's auth guarantees a real user


def _not_found(what: str) -> Status[Any]:
    return Status(404, ErrorOut(detail=f"{what} not found", code="not_found"))


def _cursor(order: Order) -> str:
    return KeysetCursor(epoch_ms(order.created_at), str(order.pk)).encode()


def _after(cursor: str) -> tuple[datetime, ObjectId]:
    """The keyset position in a cursor; ValueError when it is not one we issued."""
    position = KeysetCursor.decode(cursor)
    try:
        return moment(position.timestamp), ObjectId(position.key)
    except (InvalidId, TypeError) as error:
        raise ValueError("cursor") from error


@router.post(
    "/orders",
    response={200: OrderOut, 201: OrderOut, 409: ErrorOut, 422: ErrorOut, 503: ErrorOut},
    auth=ASYNC_API_AUTH,
    summary="Place a market, limit, stop or stop-limit order (exactly once per client_order_id)",
)
async def order_create(request: HttpRequest, payload: OrderIn, response: HttpResponse) -> Status[Any]:
    fields = payload.dict()
    terms = OrderTerms(**{name: fields.pop(name) for name in ("type", "limit_price", "stop_price", "time_in_force")})
    user = cast(User, request.user)  # the API's auth guarantees a real user
    try:
        asked = await read_cached(order_asked, terms=terms, **fields)  # the symbol from the cached directory
        trader = await read_cached(trader_ref, user)
        result = await place_order_async(account_id=trader.pk, user_id=user.pk, asked=asked)
    except OrderRejected as rejection:
        ORDERS.labels(outcome=rejection.code).inc()
        return refused(rejection, response)
    ORDERS.labels(outcome=result.order.status if result.created else "replayed").inc()
    return Status(201 if result.created else 200, OrderOut.of(result.order))


def refused(rejection: OrderRejected, response: HttpResponse) -> Status[Any]:
    if rejection.status == 503:  # the engine is busy or away: the client retries (same client_order_id)
        response["Retry-After"] = "1"
    return Status(rejection.status, ErrorOut(detail=rejection.message, code=rejection.code, field=rejection.field))


@router.get(
    "/orders",
    response={200: OrderPage, 422: ErrorOut},
    auth=ASYNC_API_AUTH,
    summary="Your orders, newest first (keyset pages)",
)
async def order_index(request: HttpRequest, filters: Query[OrderFilters]) -> Status[Any]:
    try:
        after = _after(filters.cursor) if filters.cursor else None
    except ValueError:
        return Status(422, ErrorOut(detail="cursor is not one this API issued", code="invalid_cursor", field="cursor"))
    symbol = filters.symbol.strip().upper() if filters.symbol else None
    user = cast(User, request.user)
    if after is None and symbol is None and filters.side is None and filters.status is None:
        orders = await read_cached(recent_orders, user, limit=filters.limit + 1)  # the usual first page
    else:
        orders = await sync_to_async(_filtered_orders)(
            user, limit=filters.limit + 1, after=after, symbol=symbol, side=filters.side, status=filters.status
        )
    page = orders[: filters.limit]
    next_cursor = _cursor(page[-1]) if len(orders) > filters.limit else None
    return Status(200, OrderPage(data=[OrderOut.of(o) for o in page], nextCursor=next_cursor))


def _filtered_orders(user: User, **filters: Any) -> list[Order]:
    return order_list(trader=trader_ref(user), **filters)


@router.delete(
    "/orders",
    response={200: CancelledOut, 422: ErrorOut, 503: ErrorOut},
    auth=ASYNC_API_AUTH,
    summary="Cancel all your open orders (or one symbol's), in one engine commit; nothing open: an empty list",
)
async def orders_cancel_all(
    request: HttpRequest, filters: Query[CancelAllFilters], response: HttpResponse
) -> Status[Any]:
    user = cast(User, request.user)
    trader = await read_cached(trader_ref, user)
    try:
        cancelled = await cancel_all_async(account_id=trader.pk, user_id=user.pk, symbol=filters.symbol)
    except OrderRejected as rejection:
        return refused(rejection, response)
    return Status(200, CancelledOut(cancelled=[OrderOut.of(order) for order in cancelled]))


@router.get("/orders/{order_id}", response={200: OrderOut, 404: ErrorOut}, summary="One of your orders")
def order_detail(request: HttpRequest, order_id: str) -> Status[Any]:
    order = order_get(trader=_trader(request), order_id=order_id)
    return Status(200, OrderOut.of(order)) if order is not None else _not_found("order")


@router.delete(
    "/orders/{order_id}",
    response={200: OrderOut, 404: ErrorOut, 409: CancelConflictOut, 503: ErrorOut},
    auth=ASYNC_API_AUTH,
    summary="Cancel a resting order (idempotent: a cancelled or expired order is returned as it is; filled: 409)",
)
async def order_delete(request: HttpRequest, order_id: str, response: HttpResponse) -> Status[Any]:
    user = cast(User, request.user)
    trader = await read_cached(trader_ref, user)
    order = await sync_to_async(order_get)(trader=trader, order_id=order_id)
    if order is None:
        return _not_found("order")
    try:
        if order.status == Order.Status.OPEN:
            order = await order_cancel_async(order=order, user_id=user.pk)
        elif order.status == Order.Status.FILLED:
            raise OrderRejected("already_filled", "order_id", "the order was filled and cannot be cancelled", 409)
    except OrderRejected as rejection:
        if rejection.status != 409:
            return refused(rejection, response)
        filled = await sync_to_async(order_get)(trader=trader, order_id=order_id)
        assert filled is not None
        conflict = CancelConflictOut(
            detail=rejection.message, code=rejection.code, field="order_id", order=OrderOut.of(filled)
        )
        return Status(409, conflict)
    return Status(200, OrderOut.of(order))


@router.get(
    "/portfolio", response=PortfolioOut, auth=ASYNC_API_AUTH, summary="Cash, holdings at the latest prices, P&L"
)
async def portfolio(request: HttpRequest) -> PortfolioOut:
    found = await read_cached(portfolio_of, cast(User, request.user))
    return PortfolioOut.model_validate(found, from_attributes=True)


@router.get(
    "/trades/{order_id}/invoice",
    response={404: ErrorOut},
    summary="The trade's PDF confirmation (made on first download, then kept)",
)
def invoice_download(request: HttpRequest, order_id: str) -> HttpResponse | Status[Any]:
    invoice = invoice_for_order(trader=_trader(request), order_id=order_id)
    if invoice is None:
        return _not_found("trade")
    response = HttpResponse(invoice_pdf(invoice), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="confirmation-{invoice.number}.pdf"'
    return response


def certified_trade(invoice: Invoice) -> CertifiedTrade:
    order = invoice.order
    return CertifiedTrade(
        number=invoice.number,
        trader=invoice.trader.user.get_username(),
        trade_id=str(order.pk),
        **trade_fields(order),
        executed_at=order.created_at,
        invoice_status=invoice.status,
    )


VERDICT_DETAIL = {
    "authentic": "This confirmation was issued by this platform and its content is unchanged.",
    "tampered": "A confirmation with this code exists, but its content no longer matches the code.",
    "unknown": "No confirmation with this code was issued by this platform.",
}


@router.get(
    "/invoices/verify/{code}", response=VerificationOut, auth=None, summary="Check a confirmation's code (public)"
)
def invoice_verification(request: HttpRequest, code: str) -> VerificationOut:
    verification = invoice_verify(code)
    return VerificationOut(
        authentic=verification.authentic,
        verdict=cast(Literal["authentic", "tampered", "unknown"], verification.verdict),
        detail=VERDICT_DETAIL[verification.verdict],
        certifies=certified_trade(verification.invoice) if verification.authentic and verification.invoice else None,
    )
