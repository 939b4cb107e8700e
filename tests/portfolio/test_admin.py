"""The admin: records listed and searched; cash and holding edits go to the order engine as adjustments."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apps.portfolio.models import Holding, Order, Trader
from apps.portfolio.services import OrderRejected, OrderTerms, place_order


@pytest.fixture
def staff_client(db: None) -> Client:
    get_user_model().objects.create_superuser("root", "root@example.com", "root-pass")
    client = Client()
    assert client.login(username="root", password="root-pass")
    return client


@pytest.mark.parametrize("model", ["trader", "holding", "order", "invoice"])
def test_trading_records_are_listed_searched_and_filtered_in_the_admin(
    staff_client, market, make_trader, model
) -> None:
    trader, _ = make_trader("1000.00", name="listed-trader")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=2)
    listing = staff_client.get(f"/admin/portfolio/{model}/")
    assert listing.status_code == 200
    assert b"listed-trader" in listing.content
    assert staff_client.get(f"/admin/portfolio/{model}/", {"q": "ACME"}).status_code == 200


def test_saving_a_traders_cash_in_the_admin_adjusts_the_engines_account(staff_client, market, make_trader) -> None:
    trader, _ = make_trader("1000.00", name="adjusted")
    answer = staff_client.post(f"/admin/portfolio/trader/{trader.pk}/change/", {"cash": "1250.50"})
    assert answer.status_code == 302
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("1250.50")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=125)  # the engine spends the new cash
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("0.50")


def test_cash_below_what_resting_orders_reserve_is_refused_in_the_admin(staff_client, market, make_trader) -> None:
    trader, _ = make_trader("1000.00", name="reserving")
    terms = OrderTerms(type="limit", limit_price=Decimal("9.00"), time_in_force="gtc")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=100, terms=terms)  # reserves 900.00
    answer = staff_client.post(f"/admin/portfolio/trader/{trader.pk}/change/", {"cash": "800.00"}, follow=True)
    assert b"Not changed" in answer.content
    assert Trader.objects.get(pk=trader.pk).cash == Decimal("1000.00")


def test_saving_and_deleting_a_holding_in_the_admin_adjusts_the_engines_position(
    staff_client, market, make_trader
) -> None:
    trader, _ = make_trader("1000.00", name="holder")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=2)
    holding = Holding.objects.get(trader=trader, symbol="ACME")
    form = {"trader": str(trader.pk), "symbol": "ACME", "quantity": "40", "average_cost": "9.5000"}
    assert staff_client.post(f"/admin/portfolio/holding/{holding.pk}/change/", form).status_code == 302
    holding = Holding.objects.get(trader=trader, symbol="ACME")
    assert (holding.quantity, holding.average_cost) == (40, Decimal("9.5000"))
    assert place_order(trader=trader, symbol="ACME", side="sell", quantity=40).order.status == Order.Status.FILLED
    place_order(trader=trader, symbol="ACME", side="buy", quantity=3)
    holding = Holding.objects.get(trader=trader, symbol="ACME")
    answer = staff_client.post(f"/admin/portfolio/holding/{holding.pk}/delete/", {"post": "yes"})
    assert answer.status_code == 302
    assert not Holding.objects.filter(trader=trader).exists()
    with pytest.raises(OrderRejected) as caught:  # the engine forgot the position too
        place_order(trader=trader, symbol="ACME", side="sell", quantity=1)
    assert caught.value.code == "insufficient_holding"
