"""The invoice outbox: a job the broker refused, or a worker killed mid-render, never leaves an invoice pending."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from kombu.exceptions import OperationalError

from apps.core.jobs import job_lease
from apps.core.metrics import JOBS_LEFT_IN_OUTBOX
from apps.portfolio.models import Invoice, Order
from apps.portfolio.services import INVOICE_TASK, invoice_job_key, invoices_resend_stalled, place_order
from apps.portfolio.tasks import generate_invoice

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
