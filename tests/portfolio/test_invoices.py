"""Invoices: rendered in the background, once; signed; verifiable by anyone; dead-lettered when failing."""

import os
import signal
import time

import pytest
from django.test import Client

from apps.core.models import DeadLetter
from apps.portfolio.models import Invoice, Order
from apps.portfolio.services import place_order
from apps.portfolio.tasks import generate_invoice


@pytest.fixture
def quiet_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generate_invoice, "apply_async", lambda *a, **k: None)


@pytest.fixture
def trade(market, make_trader, quiet_broker) -> Order:
    trader, _ = make_trader("1000.00", name="ivy")
    return place_order(trader=trader, symbol="BOLT", side="buy", quantity=3).order


def test_the_job_renders_a_pdf_with_the_trade_and_its_verification_link(trade) -> None:
    assert generate_invoice.run(str(trade.pk)) == "ready"
    invoice = Invoice.objects.get(order=trade)
    assert invoice.status == "ready" and invoice.ready_at is not None
    pdf = bytes(invoice.pdf)
    assert pdf.startswith(b"%PDF")
    assert f"/verify/{invoice.verification_code}".encode() in pdf  # the link annotation


def test_a_redelivered_job_leaves_one_unchanged_invoice(trade) -> None:
    generate_invoice.run(str(trade.pk))
    first = Invoice.objects.get(order=trade)
    assert generate_invoice.run(str(trade.pk)) == "ready"
    again = Invoice.objects.get(order=trade)
    assert Invoice.objects.filter(order=trade).count() == 1
    assert (again.ready_at, bytes(again.pdf)) == (first.ready_at, bytes(first.pdf))


def test_a_job_for_an_unknown_trade_does_nothing(db: None) -> None:
    assert generate_invoice.run("0" * 24) == "unknown"
    assert generate_invoice.run("not-an-id") == "unknown"


def test_invoices_are_numbered_per_trader_from_one(market, make_trader, quiet_broker) -> None:
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


def test_a_job_that_keeps_failing_retries_then_lands_in_the_dead_letter_store(trade, monkeypatch) -> None:
    from apps.portfolio import tasks

    attempts: list[int] = []

    def broken(invoice: Invoice) -> bytes:
        attempts.append(1)
        raise OSError("disk full")

    monkeypatch.setattr(tasks, "render_invoice_pdf", broken)
    result = generate_invoice.apply(args=[str(trade.pk)])  # eager: retries run at once, without the backoff waits
    assert result.failed()
    assert len(attempts) == generate_invoice.max_retries + 1
    letter = DeadLetter.objects.get(task_name="apps.portfolio.tasks.generate_invoice")
    assert letter.args == [str(trade.pk)] and "disk full" in letter.error
    assert Invoice.objects.get(order=trade).status == "failed"


def test_a_replayed_dead_letter_still_produces_the_invoice(trade, monkeypatch) -> None:
    from apps.core.jobs import dead_letters_replay
    from apps.portfolio import tasks

    real = tasks.render_invoice_pdf
    monkeypatch.setattr(tasks, "render_invoice_pdf", lambda invoice: (_ for _ in ()).throw(OSError("disk full")))
    generate_invoice.apply(args=[str(trade.pk)])
    assert Invoice.objects.get(order=trade).status == "failed"
    monkeypatch.setattr(tasks, "render_invoice_pdf", real)
    monkeypatch.setattr(generate_invoice, "apply_async", lambda args=(), kwargs=None, **_: generate_invoice.apply(args))
    assert dead_letters_replay(DeadLetter.objects.all()) == 1
    assert Invoice.objects.get(order=trade).status == "ready"


@pytest.mark.slow
def test_with_a_real_worker_the_order_returns_first_and_the_invoice_becomes_ready(
    market, make_trader, celery_worker_process
) -> None:
    _, token = make_trader("1000.00")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    os.kill(celery_worker_process.pid, signal.SIGSTOP)  # the worker cannot start the job until we say so
    try:
        created = client.post(
            "/api/v1/orders", {"symbol": "ACME", "side": "buy", "quantity": 2}, content_type="application/json"
        )
        assert created.status_code == 201  # the order answered with its job still waiting
        invoice_url = created.json()["invoice_url"]
        assert client.get(invoice_url).status_code == 202
    finally:
        os.kill(celery_worker_process.pid, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while (response := client.get(invoice_url)).status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert response.status_code == 200 and response.content.startswith(b"%PDF")


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


def test_codes_keep_verifying_after_the_secret_key_is_rotated(market, make_trader, quiet_broker, settings) -> None:
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
