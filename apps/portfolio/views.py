"""Server-rendered pages of the trading app."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.portfolio.api import VERDICT_DETAIL, certified_trade
from apps.portfolio.verification import invoice_verify


def invoice_verify_page(request: HttpRequest, code: str) -> HttpResponse:
    """Public: anyone holding a confirmation can check it. Unknown codes are a 404 page, not an error."""
    verification = invoice_verify(code)
    context = {
        "code": code,
        "verdict": verification.verdict,
        "detail": VERDICT_DETAIL[verification.verdict],
        "trade": certified_trade(verification.invoice) if verification.authentic and verification.invoice else None,
    }
    return render(request, "portfolio/verify.html", context, status=404 if verification.verdict == "unknown" else 200)
