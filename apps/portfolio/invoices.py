"""Trade confirmations (invoices): what a verification code certifies, how it is signed, the PDF.

The code is an HMAC-SHA256, keyed by the server secret, over the invoice's
canonical content. Verifying recomputes it from the stored record and compares
in constant time, so an altered record or an invented code does not verify.

Key rotation: a code is `<key id>.<mac>`; the key id (8 characters, a digest of
the key, revealing nothing of it) names which of SECRET_KEY and
SECRET_KEY_FALLBACKS signed it, so codes keep verifying after the secret is
rotated for as long as the old key stays among the fallbacks. Codes issued before
key ids existed (the bare 43-character mac) are checked against every key.
"""

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.urls import reverse
from fpdf import FPDF

from apps.core.clock import to_milliseconds
from apps.portfolio.models import Invoice, Order

CODE_PATTERN = re.compile(r"^(?:(?P<key_id>[A-Za-z0-9_-]{8})\.)?(?P<mac>[A-Za-z0-9_-]{43})$")


def _invoice_key(secret: str) -> bytes:
    """A key of its own for invoices, derived from a server secret."""
    return hashlib.sha256(b"invoice-verification:" + secret.encode()).digest()


def _key_id(key: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(b"invoice-key-id:" + key).digest()).decode()[:8]


def _invoice_keys() -> list[bytes]:
    """The signing key first, then the keys of SECRET_KEY_FALLBACKS (newest first)."""
    return [_invoice_key(secret) for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]]


def _mac(key: bytes, *, content: str) -> str:
    digest = hmac.new(key, content.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class CertifiedContent:
    """What a verification code certifies: the trade and its confirmation's number."""

    trade_id: str
    trader_id: str
    symbol: str
    side: str
    quantity: int
    price: Decimal
    amount: Decimal
    executed_at: datetime
    number: int

    def text(self) -> str:
        """One canonical text."""
        fields = [
            self.trade_id,
            self.trader_id,
            self.symbol,
            self.side,
            str(self.quantity),
            f"{self.price:.2f}",
            f"{self.amount:.2f}",
            to_milliseconds(self.executed_at).isoformat(timespec="milliseconds"),
            str(self.number),
        ]
        return "|".join(fields)


def invoice_content(*, order: Order, number: int) -> str:
    """What a stored trade's verification code certifies, as one canonical text."""
    assert order.price is not None and order.amount is not None
    return CertifiedContent(
        str(order.pk),
        str(order.trader_id),
        order.symbol,
        order.side,
        order.quantity,
        order.price,
        order.amount,
        order.created_at,
        number,
    ).text()


def content_code(content: CertifiedContent) -> str:
    """`<key id>.<HMAC-SHA256 over the canonical content>`, URL-safe (52 characters), signed with SECRET_KEY."""
    key = _invoice_keys()[0]
    return f"{_key_id(key)}.{_mac(key, content=content.text())}"


def invoice_code(*, order: Order, number: int) -> str:
    """The code of a stored trade (what the engine signed in its batch, from the same content)."""
    key = _invoice_keys()[0]
    return f"{_key_id(key)}.{_mac(key, content=invoice_content(order=order, number=number))}"


def code_matches(code: str, *, order: Order, number: int) -> bool:
    """Whether `code` is the mac of this content under the key it names (a bare mac: under any key)."""
    match = CODE_PATTERN.match(code)
    if match is None:
        return False
    keys = _invoice_keys()
    if match["key_id"] is not None:
        keys = [key for key in keys if hmac.compare_digest(_key_id(key), match["key_id"])]
    # Every candidate is compared (no early exit), so the time taken says nothing about which key matched.
    content = invoice_content(order=order, number=number)
    results = [hmac.compare_digest(_mac(key, content=content), match["mac"]) for key in keys]
    return any(results)


def verify_url(code: str) -> str:
    return settings.PUBLIC_URL.rstrip("/") + reverse("invoice-verify", args=[code])


def _latin1(text: str) -> str:
    """The PDF core fonts are Latin-1; anything else is shown as '?' rather than failing the job."""
    return text.encode("latin-1", "replace").decode("latin-1")


def render_invoice_pdf(invoice: Invoice) -> bytes:
    order = invoice.order
    trader = invoice.trader
    pdf = FPDF(format="A4")
    pdf.set_title(f"Trade confirmation {invoice.number}")
    pdf.set_creator("Paper-trading platform")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 12, "Trade confirmation", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 11)
    rows = [
        ("Confirmation number", f"{invoice.number}"),
        ("Trader", _latin1(trader.user.get_username())),
        ("Trade id", str(order.pk)),
        ("Client order id", _latin1(order.client_order_id)),
        ("Executed at (UTC)", order.created_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]),
        ("Side", order.side.upper()),
        ("Symbol", order.symbol),
        ("Quantity", f"{order.quantity:,}"),
        ("Price", f"{order.price:,.2f}"),
        ("Amount", f"{order.amount:,.2f}"),
    ]
    for label, value in rows:
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(55, 8, label)
        pdf.set_font("Helvetica", "", 11)
        pdf.cell(0, 8, value, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 8, "Verification", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Courier", "", 10)
    pdf.cell(0, 6, invoice.verification_code, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    url = verify_url(invoice.verification_code)
    pdf.multi_cell(0, 6, f"Check this confirmation at {url}", link=url)
    return bytes(pdf.output())
