"""The trader's own events from the order engine and the invoice path: after commit, in order, never failing a
trade. The engine announces a batch's events in the pipeline that answers it (apps/portfolio/engine/publish.py)."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import ANY

import pytest
import redis
from django_mongodb_backend import transaction

from apps.core import account_events
from apps.core.redis import redis_client
from apps.portfolio.events import publish_account_event
from apps.portfolio.models import Order
from apps.portfolio.services import place_order


def stored(user_id: object) -> list[dict[str, Any]]:
    entries = redis_client().xrange(account_events.history_key(user_id))
    return [json.loads(fields[b"f"]) for _id, fields in entries]


def test_a_market_order_announces_accepted_then_filled_with_the_orders_fields(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    order = place_order(trader=trader, symbol="ACME", side="buy", quantity=3, client_order_id="ev-1").order
    accepted, filled, ready = stored(trader.user_id)
    assert (accepted["seq"], accepted["event"], accepted["status"]) == (1, "order_accepted", "accepted")
    assert (filled["seq"], filled["event"], filled["status"]) == (2, "order_filled", "filled")
    assert filled == {
        **filled,
        "type": "account",
        "id": str(order.pk),
        "client_order_id": "ev-1",
        "symbol": "ACME",
        "side": "buy",
        "quantity": 3,
        "price": "10.00",
        "amount": "30.00",
        "invoice_url": f"/api/v1/trades/{order.pk}/invoice",
    }
    assert (ready["seq"], ready["event"], ready["id"], ready["invoice_number"]) == (
        3,
        "invoice_ready",
        str(order.pk),
        1,
    )
    # A replay of the same client_order_id changes nothing, so it announces nothing.
    place_order(trader=trader, symbol="ACME", side="buy", quantity=3, client_order_id="ev-1")
    assert len(stored(trader.user_id)) == 3


def test_a_refused_order_announces_nothing(market, make_trader) -> None:
    trader, _ = make_trader("10.00")
    with pytest.raises(Exception, match="not enough buying power"):
        place_order(trader=trader, symbol="ACME", side="buy", quantity=5)
    assert stored(trader.user_id) == []


def test_an_event_inside_a_transaction_waits_for_its_commit_and_a_rollback_drops_it(market, make_trader) -> None:
    trader, _ = make_trader()
    with transaction.atomic():
        publish_account_event(trader.pk, "order_cancelled", {"id": "x"})
        assert stored(trader.user_id) == []
    assert [e["event"] for e in stored(trader.user_id)] == ["order_cancelled"]  # by trader id: looked up
    with pytest.raises(RuntimeError), transaction.atomic():
        publish_account_event(trader.pk, "order_expired", {"id": "y"})
        raise RuntimeError("rolled back")
    assert len(stored(trader.user_id)) == 1


def test_an_unknown_event_is_a_programming_error(make_trader) -> None:
    trader, _ = make_trader()
    with pytest.raises(ValueError, match="event: expected one of"):
        publish_account_event(trader.pk, "order_exploded", {})


def test_a_ready_invoice_is_announced_once_with_its_fill(market, make_trader) -> None:
    from apps.portfolio.models import Invoice
    from apps.portfolio.services import invoice_pdf

    trader, _ = make_trader("1000.00")
    order = place_order(trader=trader, symbol="BOLT", side="buy", quantity=1).order
    invoice_pdf(Invoice.objects.get(order_id=order.pk))  # the first download renders it: nothing new to say
    invoice_pdf(Invoice.objects.get(order_id=order.pk))
    events = stored(trader.user_id)
    assert [e["event"] for e in events] == ["order_accepted", "order_filled", "invoice_ready"]
    assert events[-1] == {**events[-1], "id": str(order.pk), "invoice_status": "ready", "invoice_number": 1}


def test_an_append_named_once_is_numbered_stored_and_published_once(make_trader) -> None:
    trader, _ = make_trader()
    user = trader.user_id
    pubsub = redis_client().pubsub()
    pubsub.subscribe(account_events.channel())
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # listening before the first append
    first = account_events.append(user, {"event": "invoice_ready", "id": "a"}, once="invoice_ready:a")
    assert account_events.append(user, {"event": "invoice_ready", "id": "a"}, once="invoice_ready:a") == 0
    other = account_events.append(user, {"event": "invoice_ready", "id": "b"}, once="invoice_ready:b")
    assert (first, other) == (1, 2) and account_events.latest(user) == 2
    assert [e["id"] for e in stored(user)] == ["a", "b"]
    published = [pubsub.get_message(timeout=5) for _ in range(2)]
    account_events.append(user, {"event": "order_filled", "id": "c"})  # the next message, if none came between
    published.append(pubsub.get_message(timeout=5))
    pubsub.close()
    assert [account_events.parse_message(m["data"]) for m in published if m] == [
        (str(user), seq, ANY) for seq in (1, 2, 3)
    ]


def test_when_redis_refuses_the_events_the_order_still_fills_once_and_is_answered(
    market, make_trader, monkeypatch
) -> None:
    """The batch committed before its publishing failed: the engine reloads, reads the entry again, and
    answers it from what it committed (created, not decided a second time)."""
    trader, _ = make_trader("1000.00")
    real = account_events.stage_append
    failures = iter([redis.ConnectionError("Redis is down")])

    def refuse_once(*args: Any, **kwargs: Any) -> Any:
        if (error := next(failures, None)) is not None:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(account_events, "stage_append", refuse_once)
    result = place_order(trader=trader, symbol="ACME", side="buy", quantity=1)
    assert result.created and next(failures, None) is None
    assert list(Order.objects.filter(trader=trader).values_list("pk", flat=True)) == [result.order.pk]


def test_a_payload_too_large_for_one_frame_keeps_its_essential_fields(make_trader) -> None:
    trader, _ = make_trader()
    publish_account_event(trader.pk, "order_filled", {"id": "z", "symbol": "ACME", "note": "x" * 2000})
    (event,) = stored(trader.user_id)
    assert "note" not in event and (event["id"], event["symbol"]) == ("z", "ACME")
