"""Invoices: written pending with their code by the engine's batch, rendered on first download and stored
once (Property 35), verifiable by anyone."""

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.portfolio import services
from apps.portfolio.models import Invoice, Order
from apps.portfolio.services import invoice_pdf, place_order
from tests.mongo_commands import MONGO_UPDATES, Update


@pytest.fixture
def trade(market, make_trader) -> Order:
    trader, _ = make_trader("1000.00", name="ivy")
    return place_order(trader=trader, symbol="BOLT", side="buy", quantity=3).order


def download(order: Order, token: str) -> Any:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}").get(f"/api/v1/trades/{order.pk}/invoice")


def test_a_fill_writes_its_invoice_pending_with_its_code_and_no_pdf(trade) -> None:
    invoice = Invoice.objects.get(order=trade)
    assert (invoice.status, invoice.number, invoice.pdf, invoice.ready_at) == ("pending", 1, None, None)
    assert invoice.verification_code


def test_the_first_download_renders_the_pdf_with_its_verification_link_and_stores_it(market, make_trader) -> None:
    trader, token = make_trader("1000.00")
    order = place_order(trader=trader, symbol="BOLT", side="buy", quantity=3).order
    response = download(order, token)
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="confirmation-1.pdf"'
    invoice = Invoice.objects.get(order=order)
    assert invoice.status == "ready" and invoice.ready_at is not None
    assert bytes(invoice.pdf) == response.content and response.content.startswith(b"%PDF")
    assert f"/verify/{invoice.verification_code}".encode() in response.content  # the link annotation


def test_a_later_download_serves_the_stored_pdf_without_rendering_it_again(market, make_trader, monkeypatch) -> None:
    trader, token = make_trader("1000.00")
    order = place_order(trader=trader, symbol="ACME", side="buy", quantity=1).order
    first = download(order, token).content
    monkeypatch.setattr(services, "render_invoice_pdf", lambda invoice: pytest.fail("rendered twice"))
    assert download(order, token).content == first


def test_another_traders_invoice_and_an_unknown_trade_are_not_found(trade, make_trader) -> None:
    _, token = make_trader("1000.00")
    assert download(trade, token).status_code == 404
    assert Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/v1/trades/not-an-id/invoice").status_code == 404


@pytest.fixture
def workers() -> Iterator[ThreadPoolExecutor]:
    """Threads kept for all the examples of a test (each keeps its database connection: opening one is slow)."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        yield pool
        for done in [pool.submit(connections.close_all) for _ in range(8)]:
            done.result()


def pdf_writes(updates: list[Update], order: Order) -> int:
    """Updates that changed `order`'s invoice document and stored a PDF in it (the server's own count)."""
    return sum(
        update.modified
        for update in updates
        if update.collection == Invoice._meta.db_table
        for statement in update.statements
        if statement["q"].get("order_id") == order.pk and "pdf" in statement["u"].get("$set", {})
    )


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(downloads=st.integers(1, 8))
def test_any_number_of_concurrent_first_downloads_store_one_pdf_and_all_serve_it(
    trade, workers, monkeypatch, downloads
) -> None:
    """Feature: trading-performance-optimization, Property 35: For any critical background job, the system should
    ensure it is processed exactly once

    The invoice's one job is its PDF: `downloads` first downloads at once, every one of them rendering (each
    render is held until all have started, and each draws a PDF of its own). MongoDB's own modified count
    shows one PDF stored; every download answers that stored PDF; the invoice keeps its number and code."""
    Invoice.objects.filter(order=trade).update(status="pending", pdf=None, ready_at=None)
    before = Invoice.objects.get(order=trade)
    rendering = threading.Barrier(downloads)
    renders: list[int] = []
    lock = threading.Lock()

    def render(invoice: Invoice) -> bytes:
        rendering.wait(timeout=10)  # no download stores before every one of them has rendered
        with lock:
            renders.append(1)
            return b"%%PDF-1.4 invoice %d, render %d" % (invoice.number, len(renders))

    monkeypatch.setattr(services, "render_invoice_pdf", render)
    invoice = Invoice.objects.get(order=trade)
    with MONGO_UPDATES.recording() as updates:
        served = [done.result(timeout=30) for done in [workers.submit(invoice_pdf, invoice) for _ in range(downloads)]]
    after = Invoice.objects.get(order=trade)
    assert len(renders) == downloads
    assert pdf_writes(updates, trade) == 1
    assert after.status == "ready" and set(served) == {bytes(after.pdf)}
    assert (after.number, after.verification_code) == (before.number, before.verification_code)


def test_invoices_are_numbered_per_trader_from_one(market, make_trader) -> None:
    one, _ = make_trader()
    two, _ = make_trader()
    for trader in (one, two, one):
        place_order(trader=trader, symbol="ACME", side="buy", quantity=1)
    assert sorted(Invoice.objects.filter(trader=one).values_list("number", flat=True)) == [1, 2]
    assert list(Invoice.objects.filter(trader=two).values_list("number", flat=True)) == [1]


def test_an_authentic_code_verifies_and_shows_what_it_certifies(trade) -> None:
    code = Invoice.objects.get(order=trade).verification_code
    body = Client().get(f"/api/v1/invoices/verify/{code}").json()
    assert body["authentic"] is True and body["verdict"] == "authentic"
    certified = body["certifies"]
    assert (certified["trader"], certified["symbol"], certified["side"], certified["quantity"]) == (
        "ivy",
        "BOLT",
        "buy",
        3,
    )
    assert (certified["price"], certified["amount"], certified["number"]) == ("25.50", "76.50", 1)
    page = Client().get(f"/verify/{code}")
    assert page.status_code == 200 and b"Authentic" in page.content and b"76.50" in page.content


def test_a_record_changed_after_signing_is_reported_as_tampered(trade) -> None:
    code = Invoice.objects.get(order=trade).verification_code
    Order.objects.filter(pk=trade.pk).update(quantity=300)  # someone edits the stored trade
    body = Client().get(f"/api/v1/invoices/verify/{code}").json()
    assert (body["authentic"], body["verdict"], body["certifies"]) == (False, "tampered", None)
    page = Client().get(f"/verify/{code}")
    assert page.status_code == 200 and b"Not authentic" in page.content and b"300" not in page.content


@pytest.mark.parametrize("mangle", [lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"), lambda c: c[:20], lambda c: "x"])
def test_an_altered_or_invented_code_is_unknown(trade, mangle) -> None:
    code = mangle(Invoice.objects.get(order=trade).verification_code)
    body = Client().get(f"/api/v1/invoices/verify/{code}").json()
    assert (body["authentic"], body["verdict"]) == (False, "unknown")
    assert Client().get(f"/verify/{code}").status_code == 404


def test_verification_is_public_and_needs_no_login(trade) -> None:
    code = Invoice.objects.get(order=trade).verification_code
    assert Client().get(f"/api/v1/invoices/verify/{code}").status_code == 200


# --- key rotation ----------------------------------------------------------------------------------------
OLD_SECRET = "the-secret-before-rotation-" + "o" * 30
NEW_SECRET = "the-secret-after-rotation-" + "n" * 30


def verdict(code: str) -> str:
    return Client().get(f"/api/v1/invoices/verify/{code}").json()["verdict"]


def legacy_code(secret: str, order: Order, number: int) -> str:
    """A code as issued before key ids: the bare HMAC (base64url, 43 characters)."""
    import base64
    import hashlib
    import hmac

    from apps.portfolio.invoices import invoice_content

    key = hashlib.sha256(b"invoice-verification:" + secret.encode()).digest()
    digest = hmac.new(key, invoice_content(order=order, number=number).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_codes_keep_verifying_after_the_secret_key_is_rotated(market, make_trader, settings) -> None:
    trader, _ = make_trader("1000.00")
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_SECRET, []
    before = place_order(trader=trader, symbol="ACME", side="buy", quantity=1).order
    code_before = Invoice.objects.get(order=before).verification_code
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_SECRET, [OLD_SECRET]  # the rotation
    after = place_order(trader=trader, symbol="ACME", side="buy", quantity=1).order
    code_after = Invoice.objects.get(order=after).verification_code
    assert code_before.split(".")[0] != code_after.split(".")[0]  # each names its key
    assert (verdict(code_before), verdict(code_after)) == ("authentic", "authentic")
    settings.SECRET_KEY_FALLBACKS = []  # the old key retired: its codes can no longer be vouched for
    assert (verdict(code_before), verdict(code_after)) == ("tampered", "authentic")


def test_a_code_issued_before_key_ids_still_verifies_with_the_current_and_the_fallback_keys(trade, settings) -> None:
    invoice = Invoice.objects.get(order=trade)
    for signing_secret, fallbacks in [(settings.SECRET_KEY, []), (OLD_SECRET, [OLD_SECRET])]:
        code = legacy_code(signing_secret, trade, invoice.number)
        Invoice.objects.filter(pk=invoice.pk).update(verification_code=code)
        settings.SECRET_KEY_FALLBACKS = fallbacks
        assert verdict(code) == "authentic"
    Order.objects.filter(pk=trade.pk).update(quantity=300)
    assert verdict(code) == "tampered"


def test_a_code_naming_one_key_does_not_verify_with_another(trade, settings) -> None:
    code = Invoice.objects.get(order=trade).verification_code
    key_id, mac = code.split(".")
    forged_id = ("A" if key_id[0] != "A" else "B") + key_id[1:]
    Invoice.objects.filter(order=trade).update(verification_code=f"{forged_id}.{mac}")
    assert verdict(f"{forged_id}.{mac}") == "tampered"
