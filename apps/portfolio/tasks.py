"""Background jobs of the trading app."""

from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings

from apps.core.jobs import ReliableTask, job_lease
from apps.core.metrics import INVOICES_RENDERED
from apps.portfolio.invoices import render_invoice_pdf
from apps.portfolio.models import Invoice
from apps.portfolio.selectors import invoice_with_trade, object_id
from apps.portfolio.services import (
    invoice_announce_ready,
    invoice_job_key,
    invoice_mark_failed,
    invoice_mark_ready,
    invoices_resend_stalled,
)


class InvoiceTask(ReliableTask):
    abstract = True

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        super().on_failure(exc, task_id, args, kwargs, einfo)
        if args:
            order_id = object_id(str(args[0]))
            if order_id is not None:
                invoice_mark_failed(order_id=order_id)


@shared_task(base=InvoiceTask, name="apps.portfolio.tasks.generate_invoice")
def generate_invoice(order_id: str) -> str:
    """Render and store the trade's PDF confirmation, then announce it; a redelivered job stores nothing
    and announces only what its first delivery may have died before announcing (Property 35)."""
    pk = object_id(order_id)
    invoice = None if pk is None else invoice_with_trade(order_id=pk)
    if invoice is None:
        return "unknown"
    if invoice.status == Invoice.Status.READY:
        invoice_announce_ready(invoice=invoice)  # a redelivery: the PDF exists
        return invoice.status
    with job_lease(invoice_job_key(order_id), seconds=settings.INVOICE_JOB_LEASE_SECONDS):  # the sweeper waits
        if invoice_mark_ready(invoice=invoice, pdf=render_invoice_pdf(invoice)):
            INVOICES_RENDERED.inc()
    return Invoice.Status.READY


@shared_task(base=ReliableTask, name="portfolio.sweep_invoices", max_retries=0)
def sweep_invoices() -> int:
    """Beat, every INVOICE_SWEEP_SECONDS: resend stalled invoice jobs (the next run retries, not Celery)."""
    return invoices_resend_stalled(older_than=timedelta(seconds=settings.INVOICE_RESEND_AFTER_SECONDS))
