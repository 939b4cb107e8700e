import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apps.market.buckets import store_ticks
from tests.market.engine_fakes import numbered_ticks


@pytest.fixture
def staff_client(db: None) -> Client:
    get_user_model().objects.create_superuser("root", "root@example.com", "root-pass")
    client = Client()
    assert client.login(username="root", password="root-pass")
    return client


def test_stored_ticks_are_listed_newest_first_and_read_only(staff_client: Client) -> None:
    store_ticks(numbered_ticks(60, symbols=["AAA", "BBB"]))
    response = staff_client.get("/admin/market/pricetick/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "run-0000000059" in content and "run-0000000009" not in content  # 50 a page, newest first
    assert "Add price tick" not in content
    searched = staff_client.get("/admin/market/pricetick/", {"q": "BBB"}).content.decode()
    assert "run-0000000059" in searched and "run-0000000058" not in searched


def test_a_stored_tick_cannot_be_changed_or_deleted(staff_client: Client) -> None:
    store_ticks(numbered_ticks(1))
    from apps.market.models import PriceTick

    tick = PriceTick.objects.get()
    assert staff_client.post(f"/admin/market/pricetick/{tick.pk}/change/", {"price": "1"}).status_code == 403
    assert staff_client.post(f"/admin/market/pricetick/{tick.pk}/delete/", {"post": "yes"}).status_code == 403
    assert PriceTick.objects.get().price == tick.price
