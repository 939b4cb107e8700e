"""The dashboard in a real Chromium: load cost, virtual rows, selective updates, batching, reconnect, orders."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from apps.core.redis import redis_client
from apps.market.buckets import store_ticks
from apps.market.models import TickBucket
from apps.market.ring import stage_ring
from apps.market.ticks import Tick
from tests.browser.conftest import DaphneServer, login, publish, tick, wait_live

pytestmark = pytest.mark.browser


def rendered_rows(page: Page) -> int:
    return page.locator("#market-rows .mt-row").count()


def first_visible_symbol(page: Page) -> str:
    return page.evaluate("window.__stats.subscribed.find((s) => document.querySelector(`.mt-row[data-symbol='${s}']`))")


def publish_until(page: Page, symbol: str, prices: list[float], condition: str, timeout: float = 10.0) -> None:
    """Publish ticks for `symbol` until the page shows it (the feed may still be joining the symbol's channel)."""
    deadline = time.monotonic() + timeout
    index = 0
    while time.monotonic() < deadline:
        publish([tick(symbol, prices[index % len(prices)])])
        index += 1
        if page.evaluate(condition):
            return
        page.wait_for_timeout(150)
    raise AssertionError(f"the page never showed the update of {symbol}")


def test_loading_the_dashboard_makes_at_most_three_api_calls(
    page: Page, server: DaphneServer, django_db_blocker: Any
) -> None:
    login(page.context, server, django_db_blocker, "loader")
    api_calls: list[str] = []
    page.on("request", lambda r: api_calls.append(r.url) if "/api/" in r.url else None)
    page.goto(server.url + "/")
    wait_live(page)
    page.wait_for_load_state("networkidle")
    assert len(api_calls) <= 3, api_calls
    assert page.evaluate("document.querySelectorAll('#market-rows .mt-row').length") > 0


def test_five_hundred_symbols_keep_tens_of_rows_in_the_dom_and_scrolling_shows_the_right_ones(
    dashboard: Page, market: list[str]
) -> None:
    page = dashboard
    assert page.locator("#market-count").inner_text() == f"({len(market)})"
    assert 10 <= rendered_rows(page) <= 60
    row_height = page.evaluate(
        "parseFloat(getComputedStyle(document.getElementById('market-rows')).getPropertyValue('--row-height'))"
    )
    page.evaluate(f"document.getElementById('market-rows').scrollTop = {300 * row_height}")
    expect(page.locator(f"#market-rows .mt-row[data-symbol='{market[300]}']")).to_be_visible()
    assert page.locator(f"#market-rows .mt-row[data-symbol='{market[0]}']").count() == 0
    assert 10 <= rendered_rows(page) <= 60
    top = page.evaluate(
        """() => {
          const viewportTop = document.getElementById('market-rows').getBoundingClientRect().top;
          return [...document.querySelectorAll('#market-rows .mt-row')]
            .sort((a, b) => a.dataset.index - b.dataset.index)
            .find((row) => row.getBoundingClientRect().top >= viewportTop).dataset.symbol;
        }"""
    )
    assert top == market[300]
    # the feed follows the viewport: the rows now on screen are subscribed
    page.wait_for_function(f"window.__stats.subscribed.includes('{market[300]}')")


def test_an_update_to_one_symbol_touches_only_its_row(dashboard: Page) -> None:
    page = dashboard
    symbol = first_visible_symbol(page)
    page.evaluate(
        """() => {
          window.__touched = new Set();
          new MutationObserver((records) => {
            for (const r of records) {
              const row = (r.target.nodeType === 1 ? r.target : r.target.parentElement).closest('.mt-row');
              window.__touched.add(row ? row.dataset.symbol : 'outside-a-row');
            }
          }).observe(document.getElementById('market-rows'),
                     {subtree: true, childList: true, attributes: true, characterData: true});
        }"""
    )
    publish_until(page, symbol, [123.45, 123.46], f"window.__touched.has('{symbol}')")
    # The update's last mutation is its price flash going off: anything else it touched has been touched by then.
    page.wait_for_function(
        f"!document.querySelector(\".mt-row[data-symbol='{symbol}'] .c-price\").className.includes('flash')"
    )
    assert page.evaluate("[...window.__touched]") == [symbol]


def test_under_five_hundred_ticks_per_second_state_is_applied_at_most_ten_times_per_second(
    dashboard: Page, market: list[str]
) -> None:
    page = dashboard
    subscribed = page.evaluate("window.__stats.subscribed")
    stop = threading.Event()

    def publisher() -> None:
        step = 0
        while not stop.is_set():
            started = time.monotonic()
            batch = [market[(step * 50 + i) % len(market)] for i in range(40)] + subscribed[:10]
            publish([tick(s, 100 + (step % 7) + i / 100) for i, s in enumerate(batch)])
            step += 1
            time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))  # 50 ticks every 100 ms = 500/s

    thread = threading.Thread(target=publisher, daemon=True)
    before = page.evaluate("({applies: window.__stats.applies, frames: window.__stats.frames})")
    thread.start()
    try:  # at most 10 applies a second: 25 of them take at least 2.5 s of the 500 ticks/s stream
        page.wait_for_function(f"window.__stats.applies >= {before['applies'] + 25}", timeout=20_000)
    finally:
        stop.set()
        thread.join()
    stats = page.evaluate(
        "({applies: window.__stats.applies, frames: window.__stats.frames, times: window.__stats.applyTimes})"
    )
    applies = stats["applies"] - before["applies"]
    assert applies > 5, stats
    times = stats["times"][-applies:]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 99, gaps
    assert all(sum(1 for t in times if start <= t < start + 1000) <= 10 for start in times)


def test_losing_the_server_shows_a_notice_then_reconnects_and_resumes_the_same_symbols(
    page: Page, market: list[str], bundle: None, django_db_blocker: Any
) -> None:
    own = DaphneServer()
    own.start()  # its own server: stopping it must not disturb the other tests' one
    try:
        login(page.context, own, django_db_blocker, "reconnector")
        page.goto(own.url + "/")
        wait_live(page)
        symbol = first_visible_symbol(page)
        subscribed = sorted(page.evaluate("window.__stats.subscribed"))
        own.stop()
        expect(page.locator("#reconnecting")).to_be_visible(timeout=10_000)
        own.start()
        expect(page.locator("#reconnecting")).to_be_hidden(timeout=20_000)
        assert sorted(page.evaluate("window.__stats.subscribed")) == subscribed
        publish_until(
            page,
            symbol,
            [222.22, 222.23],
            f"document.querySelector(\".mt-row[data-symbol='{symbol}'] .c-price\").textContent.startsWith('222.2')",
        )
    finally:
        own.stop()


def test_placing_an_order_updates_cash_and_holdings(dashboard: Page, market: list[str]) -> None:
    page = dashboard
    symbol = first_visible_symbol(page)
    publish([tick(symbol, 50.0)])
    page.locator(f".mt-row[data-symbol='{symbol}'] .c-ticker").click()
    expect(page.locator("#symbol-title")).to_contain_text(symbol)
    page.fill("#quantity", "10")
    page.click("#place-order")
    expect(page.locator("#ticket-message")).to_contain_text(f"Bought 10 {symbol}")
    expect(page.locator("#portfolio [data-field=cash]")).to_have_text("$99,500.00")
    expect(page.locator(f"#portfolio tr[data-symbol='{symbol}']")).to_contain_text("10")
    expect(page.locator("#orders")).to_contain_text(symbol)


def test_an_over_budget_order_shows_the_api_message(dashboard: Page, market: list[str]) -> None:
    page = dashboard
    symbol = first_visible_symbol(page)
    publish([tick(symbol, 500.0)])
    page.locator(f".mt-row[data-symbol='{symbol}'] .c-ticker").click()
    page.fill("#quantity", "1000")
    page.click("#place-order")
    expect(page.locator("#ticket-message")).to_have_text(f"not enough buying power for 1000 {symbol}")
    expect(page.locator("#portfolio [data-field=cash]")).to_have_text("$100,000.00")


def test_a_failing_api_call_is_retried_with_backoff_and_the_trader_is_told(
    page: Page, server: DaphneServer, django_db_blocker: Any
) -> None:
    login(page.context, server, django_db_blocker, "retrier")
    attempts: list[str] = []

    def flaky(route: Any) -> None:
        attempts.append(route.request.url)
        if len(attempts) <= 2:
            route.fulfill(status=503, content_type="application/json", body='{"detail": "busy", "code": "busy"}')
        else:
            route.continue_()

    page.route("**/api/v1/dashboard/chart/**", flaky)
    with page.expect_response(lambda r: "/api/v1/dashboard/chart/" in r.url and r.status == 200, timeout=15_000):
        page.goto(server.url + "/")
        expect(page.locator("#messages")).to_contain_text("retrying")
    page.wait_for_function("document.querySelector('#chart canvas') !== null")
    expect(page.locator("#messages")).not_to_contain_text("Chart for")
    assert len(attempts) == 3


def test_when_virtual_scrolling_fails_the_table_falls_back_to_normal_scrolling_with_a_warning(
    page: Page, server: DaphneServer, market: list[str], django_db_blocker: Any
) -> None:
    login(page.context, server, django_db_blocker, "fallback")
    warnings: list[str] = []
    page.on("console", lambda message: warnings.append(message.text) if message.type == "warning" else None)

    def unmeasurable_rows(route: Any) -> None:
        css = route.fetch().text() + "\n#market-rows { --row-height: 0px; }"
        route.fulfill(status=200, content_type="text/css", body=css)

    page.route("**/static/css/app.css", unmeasurable_rows)
    page.goto(server.url + "/")
    wait_live(page)
    assert rendered_rows(page) == len(market)
    assert page.locator("#market-rows.mt-plain").count() == 1
    assert any("falling back to normal scrolling" in text for text in warnings)


def test_the_market_is_usable_from_the_keyboard_and_the_theme_is_remembered(dashboard: Page, market: list[str]) -> None:
    page = dashboard
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.focus("#market-rows")
    for _ in range(3):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.locator("#symbol-title")).to_contain_text(market[3])
    page.keyboard.press("w")
    expect(page.locator("#watchlist")).to_contain_text(market[3])
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search"
    page.keyboard.type(market[3])
    expect(page.locator("#market-count")).to_have_text("(1)")
    page.click("[data-action=toggle-theme]")
    page.reload()
    wait_live(page)
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    expect(page.locator("#watchlist")).to_contain_text(market[3])


def test_the_chart_starts_from_the_ring_and_pages_back_into_stored_history(
    page: Page, server: DaphneServer, market: list[str], django_db_blocker: Any
) -> None:
    symbol = market[0]  # the symbol the page opens first
    now = int(time.time() * 1000)
    pipe = redis_client().pipeline(transaction=False)
    stage_ring(pipe, [(f"r{n:04d}", Tick(symbol, 100 + n / 100, 100.0, n, now - (50 - n) * 1000)) for n in range(50)])
    pipe.execute()
    with django_db_blocker.unblock():
        store_ticks([(f"s{n:04d}", Tick(symbol, 90.0 + n, 100.0, n, now - (300 - n) * 1000)) for n in range(150)])
    login(page.context, server, django_db_blocker, "historian")
    history_calls: list[str] = []
    page.on("request", lambda r: history_calls.append(r.url) if "/history" in r.url else None)
    page.goto(server.url + "/")
    wait_live(page)
    page.wait_for_load_state("networkidle")
    assert history_calls == []  # 50 ring points are enough for the first paint
    with page.expect_response(lambda r: "/history" in r.url) as first:
        page.click("#chart-older")
    assert [len(first.value.json()["data"]), first.value.json()["nextCursor"] is not None] == [100, True]
    with page.expect_response(lambda r: "/history" in r.url) as second:
        page.click("#chart-older")
    assert [len(second.value.json()["data"]), second.value.json()["nextCursor"]] == [50, None]
    assert "before=" in history_calls[0]
    with django_db_blocker.unblock():
        TickBucket.objects.filter(symbol=symbol).delete()


def test_the_naive_baseline_rebuilds_every_row_on_each_message(
    page: Page, server: DaphneServer, market: list[str], django_db_blocker: Any
) -> None:
    login(page.context, server, django_db_blocker, "naive")
    page.goto(server.url + "/?render=naive")
    wait_live(page)
    assert rendered_rows(page) == len(market)
    last_row = f"#market-rows .mt-row[data-symbol='{market[-1]}']"
    page.evaluate(f'window.__lastRow = document.querySelector("{last_row}")')
    publish_until(
        page,
        first_visible_symbol(page),
        [77.77, 77.78],
        "!window.__lastRow.isConnected",  # the row element was thrown away and built again
    )
    assert page.evaluate("window.__stats.mode") == "naive"
