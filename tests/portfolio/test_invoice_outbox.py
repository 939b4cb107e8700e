"""The invoice outbox: a job the broker refused, or a worker killed mid-render, never leaves an invoice pending."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from kombu.exceptions import OperationalError

from apps.core import account_events
from apps.core.jobs import job_lease
from apps.core.metrics import JOBS_LEFT_IN_OUTBOX
from apps.core.redis import redis_client
from apps.portfolio.models import Invoice, Order
from apps.portfolio.services import INVOICE_TASK, invoice_job_key, invoices_resend_stalled, place_order
from apps.portfolio.tasks import generate_invoice
from tests.mongo_commands import MONGO_UPDATES, Update

PERIOD = timedelta(seconds=60)


class Broker:
    """Stands in for the broker at the task's edge: records what was sent, or refuses while `down`."""

    def __init__(self) -> None:
        self.down = False
        self.sent: list[str] = []
        self._lock = threading.Lock()

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        if self.down:
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        with self._lock:
            self.sent.append(args[0])


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Broker:
    fake = Broker()
    monkeypatch.setattr(generate_invoice, "apply_async", fake.apply_async)
    return fake


@pytest.fixture
def trades(market: Any, make_trader: Any, broker: Broker) -> list[Order]:
    trader, _ = make_trader("1000.00", name="otto")
    return [place_order(trader=trader, symbol="BOLT", side="buy", quantity=1).order for _ in range(3)]


def later(by: timedelta) -> Any:
    return timezone.now() + by


def test_an_order_whose_invoice_job_the_broker_refuses_succeeds_and_the_sweeper_sends_it_when_it_is_back(
    market: Any, make_trader: Any, broker: Broker
) -> None:
    trader, _ = make_trader("1000.00", name="bea")
    refused_before = JOBS_LEFT_IN_OUTBOX.labels(task=INVOICE_TASK)._value.get()
    broker.down = True
    order = place_order(trader=trader, symbol="BOLT", side="buy", quantity=1).order
    assert Invoice.objects.get(order=order).status == "pending"
    assert JOBS_LEFT_IN_OUTBOX.labels(task=INVOICE_TASK)._value.get() == refused_before + 1
    broker.down = False
    assert invoices_resend_stalled(older_than=PERIOD) == 0  # not stalled yet: its period has not passed
    assert invoices_resend_stalled(older_than=PERIOD, now=later(PERIOD * 1.5)) == 1
    assert broker.sent == [str(order.pk)]
    generate_invoice.run(*broker.sent)  # what the worker does with it
    assert Invoice.objects.get(order=order).status == "ready"
    assert invoices_resend_stalled(older_than=PERIOD, now=later(PERIOD * 10)) == 0


def test_a_job_the_broker_refused_again_is_retried_in_the_next_period(trades: list[Order], broker: Broker) -> None:
    broker.sent.clear()
    broker.down = True
    assert invoices_resend_stalled(older_than=PERIOD, now=later(PERIOD * 1.5)) == 0
    broker.down = False
    assert invoices_resend_stalled(older_than=PERIOD, now=later(PERIOD * 2)) == 0  # same period: claimed
    assert invoices_resend_stalled(older_than=PERIOD, now=later(PERIOD * 2.6)) == 3


def test_the_sweeper_leaves_an_invoice_whose_job_is_running(trades: list[Order], broker: Broker) -> None:
    broker.sent.clear()
    with job_lease(invoice_job_key(trades[0].pk), seconds=30):
        assert invoices_resend_stalled(older_than=PERIOD, now=later(PERIOD * 1.5)) == 2
    assert sorted(broker.sent) == sorted(str(t.pk) for t in trades[1:])


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sweepers=st.integers(1, 6), periods=st.integers(1, 3))
def test_racing_sweepers_send_each_stalled_invoice_once_per_period(
    trades: list[Order], broker: Broker, sweepers: int, periods: int
) -> None:
    """Feature: trading-performance-optimization, Property 35: For any critical background job, the system should
    ensure it is processed exactly once"""
    Invoice.objects.filter(order__in=trades).update(resent_at=None, status="pending")
    broker.sent.clear()
    start = later(PERIOD * 1.5)
    for period in range(periods):
        now = start + PERIOD * 1.01 * period
        threads = [
            threading.Thread(target=invoices_resend_stalled, kwargs={"older_than": PERIOD, "now": now})
            for _ in range(sweepers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(broker.sent) == sorted(str(t.pk) for t in trades for _ in range(periods))
    for order_id in set(broker.sent):
        generate_invoice.run(order_id)  # every delivery of every period ends in one ready invoice
        generate_invoice.run(order_id)
    assert set(Invoice.objects.filter(order__in=trades).values_list("status", flat=True)) == {"ready"}


@pytest.fixture
def workers() -> Any:
    """Threads kept for all the examples of a test (each keeps its database connection: opening one is slow)."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    with ThreadPoolExecutor(max_workers=16) as pool:
        yield pool
        for done in [pool.submit(connections.close_all) for _ in range(16)]:
            done.result()


class WorkerKilled(BaseException):
    """The worker process dies here: nothing after this point of the delivery runs (no handler sees it)."""


class Crash:
    """Kills the next delivery that reaches the armed point: `rendering` (before the PDF is stored) or
    `after_store` (the invoice is stored ready, `invoice_ready` not yet published)."""

    def __init__(self) -> None:
        self.armed: str | None = None

    def point(self, name: str) -> None:
        if self.armed == name:
            self.armed = None
            raise WorkerKilled(name)


@pytest.fixture
def crash(monkeypatch: pytest.MonkeyPatch) -> Crash:
    from apps.portfolio import services, tasks

    crash = Crash()
    publish = services.publish_invoice_ready

    def render(invoice: Invoice) -> bytes:
        crash.point("rendering")
        return pdf_of(invoice)

    def publish_after_crash_point(invoice: Invoice) -> None:
        crash.point("after_store")
        publish(invoice)

    # The PDF drawing itself is stubbed: it is not what is at stake, and it costs 50 ms a delivery.
    monkeypatch.setattr(tasks, "render_invoice_pdf", render)
    monkeypatch.setattr(services, "publish_invoice_ready", publish_after_crash_point)
    return crash


def pdf_of(invoice: Invoice) -> bytes:
    return b"%%PDF-1.4 invoice %d" % invoice.number


def invoice_ready_frames(order: Order, after: int) -> int:
    """`invoice_ready` events of `order` in its trader's Redis history numbered after `after`."""
    user_id = order.trader.user_id
    entries = redis_client().xrange(account_events.history_key(user_id), min=f"{after + 1}-0")
    frames = [json.loads(fields[b"f"]) for _, fields in entries]
    return sum(1 for f in frames if f["event"] == "invoice_ready" and f["id"] == str(order.pk))


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
@given(
    jobs=st.lists(
        st.tuples(st.integers(1, 3), st.sampled_from([None, "rendering", "after_store"])), min_size=1, max_size=2
    ),
    sweepers=st.integers(0, 2),
)
def test_every_delivery_of_the_invoice_job_even_after_a_crash_has_its_effects_once(
    trades: list[Order], broker: Broker, crash: Crash, workers: Any, jobs: list[tuple[int, str | None]], sweepers: int
) -> None:
    """Feature: trading-performance-optimization, Property 35: For any critical background job, the system should
    ensure it is processed exactly once

    The production job (`generate_invoice`, as the worker runs it) for each trade: perhaps a first delivery
    killed mid-job (while rendering, or after storing the PDF and before announcing it), then several
    deliveries at once (a broker redelivery and the outbox sweeper can make them) with sweepers racing them,
    then one more, later. Counted in the real stores: one PDF write in MongoDB (the server's modified count),
    one `invoice_ready` event in the trader's Redis history, one ready invoice keeping its number."""
    orders = trades[: len(jobs)]
    Invoice.objects.filter(order__in=trades).update(status="pending", pdf=None, ready_at=None, resent_at=None)
    user_id = orders[0].trader.user_id
    redis_client().delete(*(account_events.once_key(user_id, f"invoice_ready:{o.pk}") for o in trades))
    numbers = {o.pk: Invoice.objects.get(order=o).number for o in orders}
    seq_before = account_events.latest(user_id) or 0
    deliveries = sum(n for n, _ in jobs)
    start = threading.Barrier(deliveries + sweepers)
    errors: list[BaseException] = []

    def run(work: Any) -> None:
        start.wait(timeout=10)
        try:
            work()
        except BaseException as error:
            errors.append(error)

    with MONGO_UPDATES.recording() as updates:
        for order, (_, crash_point) in zip(orders, jobs, strict=True):
            if crash_point is not None:
                crash.armed = crash_point
                with pytest.raises(WorkerKilled):
                    generate_invoice(str(order.pk))  # the killed delivery; the broker redelivers it below
        work = [
            lambda o=o: generate_invoice.apply(args=[str(o.pk)]).get()
            for o, (n, _) in zip(orders, jobs, strict=True)
            for _ in range(n)
        ]
        work += [lambda: invoices_resend_stalled(older_than=PERIOD, now=later(PERIOD * 1.5))] * sweepers
        for done in [workers.submit(run, w) for w in work]:
            done.result(timeout=60)
        for order in orders:
            generate_invoice.apply(args=[str(order.pk)]).get()  # one more redelivery, later
    assert errors == []
    for order in orders:
        invoice = Invoice.objects.get(order=order)
        assert (invoice.status, invoice.number) == ("ready", numbers[order.pk])
        assert bytes(invoice.pdf) == pdf_of(invoice)
        assert pdf_writes(updates, order) == 1
        assert invoice_ready_frames(order, after=seq_before) == 1
