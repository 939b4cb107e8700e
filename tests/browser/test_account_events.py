"""The trader's own events in a real Chromium: fills and invoice readiness appear without a reload (issue 19)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from apps.portfolio.models import Trader
from apps.portfolio.services import place_order
from tests.browser.conftest import DaphneServer, login, publish, tick, wait_live
from tests.browser.test_dashboard import first_visible_symbol

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("engines")]  # every test here places orders
EVENTS = "window.__stats.account.events.map((e) => e.event)"


def open_symbol(page: Page, symbol: str, price: float) -> None:
    publish([tick(symbol, price)])
    page.locator(f".mt-row[data-symbol='{symbol}'] .c-ticker").click()
    expect(page.locator("#symbol-title")).to_contain_text(symbol)


def test_a_market_orders_fill_and_invoice_readiness_appear_live_without_a_reload(
    dashboard: Page, market: list[str]
) -> None:
    page = dashboard
    page.evaluate("window.__samePage = true")  # gone if anything reloaded the page
    symbol = first_visible_symbol(page)
    open_symbol(page, symbol, 50.0)
    page.fill("#quantity", "2")
    page.click("#place-order")
    expect(page.locator("#ticket-message")).to_contain_text(f"Bought 2 {symbol}")
    # The engine announces the invoice with the fill (its PDF is rendered on first download): an account
    # event reaches the page (nothing polls).
    row = page.locator("#orders tbody tr").filter(has_text=symbol)
    expect(row.locator(".badge")).to_have_text("ready", timeout=30_000)
    expect(row.locator("a[download]")).to_have_count(1)
    assert page.evaluate(EVENTS) == ["order_accepted", "order_filled", "invoice_ready"]
    assert page.evaluate("window.__stats.account.seq") == 3
    assert page.evaluate("window.__samePage") is True


def test_an_order_placed_elsewhere_appears_in_the_open_page_at_once(
    page: Page, server: DaphneServer, market: list[str], django_db_blocker: Any
) -> None:
    username = f"elsewhere-{time.monotonic_ns() % 10**6}"
    login(page.context, server, django_db_blocker, username)
    page.goto(server.url + "/")
    wait_live(page)
    page.evaluate("window.__samePage = true")
    symbol = first_visible_symbol(page)
    publish([tick(symbol, 40.0)])
    with django_db_blocker.unblock():  # an integrator's order through the API's service, not through the page
        trader = Trader.objects.get(user=User.objects.get(username=username))
        place_order(trader=trader, symbol=symbol, side="buy", quantity=5)
    expect(page.locator("#orders tbody tr").filter(has_text=symbol)).to_contain_text("5")
    expect(page.locator("#portfolio [data-field=cash]")).to_have_text("$99,800.00")  # refreshed on the fill
    assert page.evaluate(EVENTS) == ["order_accepted", "order_filled", "invoice_ready"]  # announced with the fill
    assert page.evaluate("window.__samePage") is True


def test_the_ticket_shows_each_types_fields_and_the_apis_refusal_by_its_field(
    dashboard: Page, market: list[str]
) -> None:
    page = dashboard
    open_symbol(page, first_visible_symbol(page), 20.0)
    names = ("limit_price", "stop_price", "time_in_force")
    rows = {name: page.locator(f"#ticket [data-field-row={name}]") for name in names}
    shown = {
        "market": set(),
        "limit": {"limit_price", "time_in_force"},
        "stop": {"stop_price", "time_in_force"},
        "stop_limit": {"limit_price", "stop_price", "time_in_force"},
    }
    for order_type, fields in shown.items():
        page.select_option("#order-type", order_type)
        for name, row in rows.items():
            if name in fields:
                expect(row).to_be_visible()
            else:
                expect(row).to_be_hidden()
    page.select_option("#order-type", "limit")
    page.fill("#limit-price", "-3")
    page.click("#place-order")
    expect(page.locator("[data-error-for=limit_price]")).to_contain_text("Limit price: enter a price above 0")
    page.select_option("#order-type", "market")
    page.fill("#quantity", "2000000")  # past the API's limit: only the server knows it
    page.click("#place-order")
    expect(page.locator("[data-error-for=quantity]")).to_contain_text("quantity")
    expect(page.locator("[data-error-for=limit_price]")).to_have_text("")


def cross(symbol: str, price: float) -> None:
    """A tick as the simulator sends it: the quote write is also the engines' tick command."""
    publish([tick(symbol, price)])


def test_a_resting_limit_buy_fills_when_the_price_crosses_and_the_panels_follow_without_a_reload(
    dashboard: Page, market: list[str]
) -> None:
    page = dashboard
    page.evaluate("window.__samePage = true")
    symbol = first_visible_symbol(page)
    open_symbol(page, symbol, 50.0)
    page.select_option("#order-type", "limit")
    page.fill("#limit-price", "45")
    page.select_option("#time-in-force", "gtc")
    page.fill("#quantity", "2")
    page.click("#place-order")
    resting = page.locator("#open-orders tbody tr").filter(has_text=symbol)
    expect(resting).to_have_count(1)
    cross(symbol, 44.0)  # the real engine fills it at its limit price
    expect(resting).to_have_count(0, timeout=30_000)
    expect(page.locator("#orders tbody tr").filter(has_text=symbol)).to_contain_text("45.00")
    assert page.evaluate(EVENTS)[-3:] == ["order_accepted", "order_filled", "invoice_ready"]
    assert page.evaluate("window.__samePage") is True


def test_an_ioc_limit_that_cannot_fill_is_reported_cancelled_and_never_rests(
    dashboard: Page, market: list[str]
) -> None:
    page = dashboard
    symbol = first_visible_symbol(page)
    open_symbol(page, symbol, 50.0)
    page.select_option("#order-type", "stop")
    expect(page.locator("#time-in-force option[value=ioc]")).to_be_disabled()  # a stop waits for its price
    page.select_option("#order-type", "limit")
    expect(page.locator("#time-in-force option[value=ioc]")).to_be_enabled()
    page.fill("#limit-price", "45")
    page.select_option("#time-in-force", "ioc")
    page.fill("#quantity", "2")
    page.click("#place-order")
    expect(page.locator("#ticket-message")).to_contain_text("Not filled")
    expect(page.locator("#ticket-message")).to_contain_text("(IOC)")
    expect(page.locator("#open-orders tbody tr").filter(has_text=symbol)).to_have_count(0)
    page.wait_for_function(f"({EVENTS}).slice(-2).join() === 'order_accepted,order_cancelled'")  # the socket's events


def test_cancelling_a_resting_order_takes_it_off_the_panel(dashboard: Page, market: list[str]) -> None:
    page = dashboard
    symbol = first_visible_symbol(page)
    open_symbol(page, symbol, 30.0)
    page.select_option("#order-type", "limit")
    page.fill("#limit-price", "10")
    page.fill("#quantity", "1")
    page.click("#place-order")
    resting = page.locator("#open-orders tbody tr").filter(has_text=symbol)
    expect(resting).to_have_count(1)
    resting.locator("[data-cancel]").click()
    expect(resting).to_have_count(0)
    assert page.evaluate(EVENTS)[-1] == "order_cancelled"


def test_cancel_all_and_close_empty_the_open_orders_and_the_position(dashboard: Page, market: list[str]) -> None:
    page = dashboard
    symbol = first_visible_symbol(page)
    open_symbol(page, symbol, 40.0)
    page.fill("#quantity", "3")
    page.click("#place-order")  # a market buy: the holding to close
    holding = page.locator(f"#portfolio tr[data-symbol='{symbol}']")
    expect(holding).to_have_count(1)
    page.select_option("#order-type", "limit")
    page.select_option("#time-in-force", "gtc")
    for price in ("30", "31"):
        page.fill("#limit-price", price)
        page.click("#place-order")
        expect(page.locator("#ticket-message")).to_contain_text("placed")
    resting = page.locator("#open-orders tbody tr").filter(has_text=symbol)
    expect(resting).to_have_count(2)
    page.click("#open-orders [data-cancel-all]")
    expect(resting).to_have_count(0)
    holding.locator("[data-close]").click()
    expect(holding).to_have_count(0)
    page.wait_for_function(f"({EVENTS}).slice(-3).join() === 'order_accepted,order_filled,invoice_ready'")
