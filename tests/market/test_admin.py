import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apps.market.buckets import store_ticks
from apps.market.models import TickBucket
from tests.market.engine_fakes import numbered_ticks


@pytest.fixture
def staff_client(db: None) -> Client:
    get_user_model().objects.create_superuser("root", "root@example.com", "root-pass")
    client = Client()
    assert client.login(username="root", password="root-pass")
    return client


def test_stored_buckets_are_listed_newest_first_and_read_only(staff_client: Client) -> None:
    an_hour_later = 1_700_003_640_000
    later = [
        (f"late-{n:02d}", tick)
        for n, (_, tick) in enumerate(numbered_ticks(60, symbols=["BBB"], start_ms=an_hour_later))
    ]
    store_ticks(numbered_ticks(60, symbols=["AAA"], start_ms=1_700_000_040_000) + later)
    response = staff_client.get("/admin/market/tickbucket/")
    assert response.status_code == 200
    content = response.content.decode()
    assert content.index("BBB|") < content.index("AAA|")  # newest first
    assert "Add tick bucket" not in content
    searched = staff_client.get("/admin/market/tickbucket/", {"q": "BBB"}).content.decode()
    assert "BBB|" in searched and "AAA|" not in searched


def test_a_stored_bucket_cannot_be_changed_or_deleted(staff_client: Client) -> None:
    store_ticks(numbered_ticks(1))
    bucket = TickBucket.objects.get()
    path = f"/admin/market/tickbucket/{bucket.pk}"
    assert staff_client.post(f"{path}/change/", {"count": "1"}).status_code == 403
    assert staff_client.post(f"{path}/delete/", {"post": "yes"}).status_code == 403
    assert TickBucket.objects.get().prices == bucket.prices
