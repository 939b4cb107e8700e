"""Regenerates docs/screenshot-dashboard.png (used by the README): `make screenshot`.

A tool, not a test: its file name keeps it out of the suite, and `make screenshot` names it to pytest
so it runs with the browser fixtures (a live server, seeded market, Debian's Chromium).
"""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from apps.portfolio.tasks import generate_invoice
from django.utils import timezone
from playwright.sync_api import Page

from apps.analytics.services import analytics_refresh
from apps.core.redis import redis_client
from apps.leaderboard.services import leaderboard_rebuild
from apps.market.feed.publish import stage_publish
from apps.market.quotes import stage_quotes
from apps.market.ring import stage_ring
from apps.market.ticks import Tick
from apps.portfolio.models import Trader
from apps.portfolio.services import place_order
from tests.browser.conftest import DaphneServer, login, wait_live
from tests.conftest import BASE_DIR

pytestmark = pytest.mark.browser


def test_the_readme_screenshot_shows_a_live_dashboard(
    page: Page, server: DaphneServer, market: list[str], django_db_blocker: Any
) -> None:
    rng = random.Random(3)
    prices = {s: round(rng.uniform(20, 400), 2) for s in market}
    opening = dict(prices)
    now_ms = int(time.time() * 1000)
    # two minutes of history for every symbol, one point a second, so the chart and trends have a shape
    for second in range(120, 0, -1):
        ticks = []
        for symbol in market:
            prices[symbol] = round(prices[symbol] * (1 + rng.gauss(0.0001, 0.003)), 2)
            ticks.append(Tick(symbol, prices[symbol], opening[symbol], 1000 * (121 - second), now_ms - second * 1000))
        pipe = redis_client().pipeline(transaction=False)
        stage_ring(pipe, [(f"{t.symbol}-{t.timestamp}", t) for t in ticks])
        stage_quotes(pipe, ticks)
        pipe.execute()
    login(page.context, server, django_db_blocker, "demo-trader")
    with django_db_blocker.unblock():
        trader = Trader.objects.get(user__username="demo-trader")
        orders = [
            place_order(trader=trader, symbol=symbol, side="buy", quantity=quantity).order
            for symbol, quantity in ((market[0], 40), (market[3], 25), (market[7], 60), (market[0], 10))
        ]
        for order in orders[:3]:  # the newest stays pending, as it would while the worker renders it
            generate_invoice(str(order.pk))
        leaderboard_rebuild()
        analytics_refresh(now=timezone.now() + timedelta(minutes=1))
    page.goto(server.url + "/")
    page.evaluate(f"localStorage.setItem('watchlist', JSON.stringify({[market[0], market[3], market[12]]!r}))")
    page.reload()
    wait_live(page)
    stop = threading.Event()

    def live() -> None:
        while not stop.is_set():
            ticks = []
            for symbol in rng.sample(market, 60):
                prices[symbol] = round(prices[symbol] * (1 + rng.gauss(0, 0.003)), 2)
                ticks.append(Tick(symbol, prices[symbol], opening[symbol], 200_000, int(time.time() * 1000)))
            pipe = redis_client().pipeline(transaction=False)
            stage_quotes(pipe, ticks)
            stage_publish(pipe, ticks)
            pipe.execute()
            time.sleep(0.1)

    publisher = threading.Thread(target=live, daemon=True)
    publisher.start()
    try:
        page.wait_for_timeout(2500)
        page.screenshot(path=str(BASE_DIR / "docs" / "screenshot-dashboard.png"), full_page=True)
    finally:
        stop.set()
        publisher.join()
