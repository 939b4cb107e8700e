import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apps.portfolio.services import place_order


@pytest.fixture
def staff_client(db: None) -> Client:
    get_user_model().objects.create_superuser("root", "root@example.com", "root-pass")
    client = Client()
    assert client.login(username="root", password="root-pass")
    return client


@pytest.mark.parametrize("model", ["trader", "holding", "order", "invoice"])
def test_trading_records_are_listed_searched_and_filtered_in_the_admin(
    staff_client, market, make_trader, monkeypatch, model
) -> None:
    from apps.portfolio import tasks

    monkeypatch.setattr(tasks.generate_invoice, "apply_async", lambda *a, **k: None)
    trader, _ = make_trader("1000.00", name="listed-trader")
    place_order(trader=trader, symbol="ACME", side="buy", quantity=2)
    listing = staff_client.get(f"/admin/portfolio/{model}/")
    assert listing.status_code == 200
    assert b"listed-trader" in listing.content
    assert staff_client.get(f"/admin/portfolio/{model}/", {"q": "ACME"}).status_code == 200
