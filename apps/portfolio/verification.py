"""Checking a confirmation's code: the stored trade it names, re-signed and compared (apps/portfolio/invoices.py)."""

from dataclasses import dataclass

from apps.portfolio.invoices import CODE_PATTERN, code_matches
from apps.portfolio.models import Invoice
from apps.portfolio.selectors import invoice_with_trade


@dataclass(frozen=True)
class Verification:
    verdict: str  # "authentic", "tampered" (the record no longer matches its code) or "unknown"
    invoice: Invoice | None

    @property
    def authentic(self) -> bool:
        return self.verdict == "authentic"


def invoice_verify(code: str) -> Verification:
    """Whether `code` belongs to a confirmation we issued whose content is unchanged."""
    if not CODE_PATTERN.match(code):
        return Verification("unknown", None)
    invoice = invoice_with_trade(verification_code=code)
    if invoice is None:
        return Verification("unknown", None)
    authentic = code_matches(code, order=invoice.order, number=invoice.number)
    return Verification("authentic" if authentic else "tampered", invoice)
