"""The trader's own events from the order and invoice paths: after commit, in order, never failing a trade."""

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
from apps.portfolio.tasks import generate_invoice


@pytest.fixture(autouse=True)
def _quiet_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generate_invoice, "apply_async", lambda *a, **k: None)


def stored(user_id: object) -> list[dict[str, Any]]:
    entries = redis_client().xrange(account_events.history_key(user_id))
    return [json.loads(fields[b"f"]) for _id, fields in entries]


def test_a_market_order_announces_accepted_then_filled_with_the_orders_fields(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    order = place_order(trader=trader, symbol="ACME", side="buy", quantity=3, client_order_id="ev-1").order
    accepted, filled = stored(trader.user_id)
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
    # A replay of the same client_order_id changes nothing, so it announces nothing.
    place_order(trader=trader, symbol="ACME", side="buy", quantity=3, client_order_id="ev-1")
    assert len(stored(trader.user_id)) == 2


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


def test_a_ready_invoice_is_announced_once(market, make_trader) -> None:
    trader, _ = make_trader("1000.00")
    order = place_order(trader=trader, symbol="BOLT", side="buy", quantity=1).order
    generate_invoice.run(str(order.pk))
    generate_invoice.run(str(order.pk))  # a redelivered job: already ready, nothing new
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


def test_when_redis_refuses_the_event_the_order_still_fills(market, make_trader, monkeypatch) -> None:
    trader, _ = make_trader("1000.00")

    def refuse(*args: object, **kwargs: object) -> int:
        raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr(account_events, "append", refuse)
    result = place_order(trader=trader, symbol="ACME", side="buy", quantity=1)
    assert result.created and Order.objects.filter(pk=result.order.pk).exists()


def test_a_payload_too_large_for_one_frame_keeps_its_essential_fields(make_trader) -> None:
    trader, _ = make_trader()
    publish_account_event(trader.pk, "order_filled", {"id": "z", "symbol": "ACME", "note": "x" * 2000})
    (event,) = stored(trader.user_id)
    assert "note" not in event and (event["id"], event["symbol"]) == ("z", "ACME")
