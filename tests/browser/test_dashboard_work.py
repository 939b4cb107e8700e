"""Properties 17 and 40 on the real page: the DOM work the dashboard does for a feed, counted in Chromium.

The page is the real one (daphne, the real template and bundle, a trader with holdings and a watchlist);
only its WebSocket is scripted, so the test decides exactly which frames arrive and when, and the page's clock
is Playwright's (`page.clock`), so the batching timers fire in order without real waiting. A MutationObserver
counts the page's DOM writes: each attribute or text change is one, each inserted element counts with its
descendants, each removed node is one. Timing is never asserted: bench/dashboard_cpu.py measures the CPU.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playwright.sync_api import Browser, Page

from apps.market.feed.frames import notice_frame
from apps.market.ticks import Tick
from apps.portfolio.services import place_order, trader_create
from tests.browser.conftest import DaphneServer, publish, tick, wait_live
from tests.conftest import running_engines

pytestmark = pytest.mark.browser

PANELS = ("market-rows", "portfolio", "watchlist", "symbol-quote", "orders", "leaderboard", "analytics")
HELD = (100, 101)  # market indexes: off screen, in the portfolio
WATCHED = (200, 201)  # off screen, on the watchlist (the first is the open symbol)
LOAD_TIMEOUT_MS = 90_000
SETTLE_MS = 1_000  # after the last frame: the 100 ms batch and the 600 ms price flash have both run

# A scripted WebSocket (the page's own ws.js drives it) and a counter of DOM writes per panel.
SCRIPT = """
(() => {
  const sockets = [];
  class ScriptedSocket {
    static OPEN = 1;
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.listeners = {};
      sockets.push(this);
      queueMicrotask(() => { this.readyState = 1; this.emit("open", {}); });
    }
    addEventListener(type, listener) { (this.listeners[type] ??= []).push(listener); }
    send(text) { this.sent.push(JSON.parse(text)); }
    close() {}
    emit(type, event) { for (const listener of this.listeners[type] ?? []) listener(event); }
  }
  window.WebSocket = ScriptedSocket;
  localStorage.setItem("watchlist", JSON.stringify(__WATCHED__));

  const panels = __PANELS__;
  const counts = {};
  let total = 0;
  const weight = (record) => {
    if (record.type !== "childList") return 1;
    let written = record.removedNodes.length;
    for (const node of record.addedNodes) {
      written += node.nodeType === 1 ? 1 + node.getElementsByTagName("*").length : 1;
    }
    return written;
  };
  const count = (records) => {
    for (const record of records) {
      const written = weight(record);
      total += written;
      const element = record.target.nodeType === 1 ? record.target : record.target.parentElement;
      const home = element?.closest(panels.map((id) => `#${id}`).join(","));
      if (home) counts[home.id] = (counts[home.id] ?? 0) + written;
    }
  };
  const observer = new MutationObserver(count);
  window.__work = {
    start() {
      observer.observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
    },
    // Frames at their offsets (ms) on the page's clock; the test then runs the clock past them.
    schedule(frames) {
      for (const frame of frames) setTimeout(() => sockets.at(-1).emit("message", { data: frame.text }), frame.at);
    },
    take() {
      count(observer.takeRecords());
      const taken = { counts: { ...counts }, total, applies: window.__stats.applies };
      for (const id of Object.keys(counts)) delete counts[id];
      total = 0;
      return taken;
    },
  };
})();
"""


@dataclass
class LivePage:
    """One dashboard tab with the scripted feed, and what the test has sent it (the page's quotes after it)."""

    page: Page
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)

    def feed(self, frames: list[tuple[int, list[dict[str, Any]]]]) -> dict[str, Any]:
        """Deliver `frames` (offset ms, updates) on the page's clock; returns the DOM work they caused."""
        before = self.page.evaluate("window.__work.take()")
        texts = [
            {"at": at, "text": json.dumps({"type": "stock_updates", "updates": updates, "timestamp": 0, "batchId": n})}
            for n, (at, updates) in enumerate(frames)
        ]
        self.page.evaluate("(frames) => window.__work.schedule(frames)", texts)
        self.page.clock.run_for(max((at for at, _ in frames), default=0) + SETTLE_MS)
        for _, updates in frames:
            for update in updates:
                self.sent[update["symbol"]] = update
        work: dict[str, Any] = self.page.evaluate("window.__work.take()")
        work["applies"] -= before["applies"]
        return work

    def rows_in_dom(self) -> set[str]:
        return set(
            self.page.evaluate("[...document.querySelectorAll('#market-rows .mt-row')].map((r) => r.dataset.symbol)")
        )

    def prices_shown(self, symbols: list[str]) -> dict[str, str]:
        return self.page.evaluate(
            """(symbols) => Object.fromEntries(symbols.map((s) => [s,
                 document.querySelector(`#market-rows .mt-row[data-symbol='${s}'] .c-price`)?.textContent]))""",
            symbols,
        )


class Clock:
    """Tick timestamps that only grow (the page keeps the newest update of a symbol: latest-wins)."""

    def __init__(self) -> None:
        self.counter = itertools.count(2_000_000_000_000)

    def __call__(self) -> int:
        return next(self.counter)


STAMP = Clock()
PRICES = itertools.count(1_000)


def moved(symbol: str, volume: int) -> dict[str, Any]:
    # a fresh price, never one the page holds: every moved price of a run is distinct
    return Tick(symbol, next(PRICES) / 100, 100.0, volume, STAMP()).as_update()


@pytest.fixture(scope="module")
def trader_session(server: DaphneServer, market: list[str], django_db_blocker: Any) -> str:
    """A trader holding the HELD symbols, logged in; returns the session cookie."""
    with django_db_blocker.unblock(), running_engines():
        publish([tick(market[i], 50.0) for i in HELD])
        trader, _token = trader_create(username="work-counter", cash=Decimal("100000.00"), password="pass-work")
        for i in HELD:
            place_order(trader=trader, symbol=market[i], side="buy", quantity=3)
        client = Client()
        client.force_login(trader.user)
        return client.cookies["sessionid"].value


def open_dashboard(
    browser: Browser,
    server: DaphneServer,
    market: list[str],
    session: str,
    path: str,
    primer: list[tuple[int, list[dict[str, Any]]]],
) -> LivePage:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, bypass_csp=True)
    context.add_cookies([{"name": "sessionid", "value": session, "url": server.url}])
    script = SCRIPT.replace("__WATCHED__", json.dumps([market[i] for i in WATCHED]))
    context.add_init_script(script.replace("__PANELS__", json.dumps(PANELS)))
    page = context.new_page()
    page.clock.install()
    page.goto(server.url + path)
    # conditions, with room for a loaded machine: 500 rows, a bundle and a daphne sharing two cores
    wait_live(page, timeout=LOAD_TIMEOUT_MS)
    page.wait_for_function(
        "document.querySelectorAll('#portfolio tr[data-symbol]').length > 0", timeout=LOAD_TIMEOUT_MS
    )
    page.clock.pause_at(page.evaluate("Date.now()") + 1_000)  # from here the page's time moves only when told
    live = LivePage(page)
    page.evaluate("window.__work.start()")
    live.feed(primer)  # every symbol the examples use starts from a quote the test sent: a repeat changes nothing
    return live


@pytest.fixture(scope="module")
def primer(market: list[str]) -> list[tuple[int, list[dict[str, Any]]]]:
    """The same first quotes for both pages: the first rows (more than a screenful) and every panel's symbols."""
    symbols = [*market[:80], *(market[i] for i in (*HELD, *WATCHED, 300, 301))]
    return [(0, [moved(symbol, 1) for symbol in symbols])]


@pytest.fixture(scope="module")
def optimised(
    browser: Browser, server: DaphneServer, market: list[str], trader_session: str, primer: list[Any]
) -> Iterator[LivePage]:
    live = open_dashboard(browser, server, market, trader_session, "/", primer)
    yield live
    live.page.context.close()


@pytest.fixture(scope="module")
def naive(
    browser: Browser, server: DaphneServer, market: list[str], trader_session: str, primer: list[Any]
) -> Iterator[LivePage]:
    live = open_dashboard(browser, server, market, trader_session, "/?render=naive", primer)
    yield live
    live.page.context.close()


# Which symbol an update is for: a row on screen, a holding, a watched symbol (the first is the open one),
# or a listed symbol on no panel at all.
TARGETS = ("row", "held", "watched", "elsewhere")


def update_plans(most_frames: int) -> st.SearchStrategy[list[tuple[int, list[tuple[str, int, bool, int]]]]]:
    return st.lists(
        st.tuples(
            st.integers(0, 1_500),  # offset of the frame, ms
            st.lists(
                st.tuples(st.sampled_from(TARGETS), st.integers(0, 30), st.booleans(), st.integers(1, 100_000)),
                min_size=1,
                max_size=6,
            ),
        ),
        min_size=1,
        max_size=most_frames,
    ).map(lambda frames: sorted(frames, key=lambda frame: frame[0]))


def build_frames(
    live: LivePage, market: list[str], plan: list[tuple[int, list[tuple[str, int, bool, int]]]]
) -> tuple[list[tuple[int, list[dict[str, Any]]]], set[str]]:
    """The plan's frames for this page, and the symbols whose quote they change (a move; a repeat changes nothing)."""
    in_view = sorted(live.rows_in_dom())
    pools = {
        "row": in_view,
        "held": [market[i] for i in HELD],
        "watched": [market[i] for i in WATCHED],
        "elsewhere": [market[300], market[301]],
    }
    frames, changed = [], set()
    sent = dict(live.sent)
    for at, items in plan:
        updates = []
        for target, pick, move, cents in items:
            symbol = pools[target][pick % len(pools[target])]
            if move:
                update = moved(symbol, cents)
                changed.add(symbol)
            else:  # the same quote again, newer: nothing on the page changes
                update = {**sent[symbol], "timestamp": STAMP()}
            sent[symbol] = update
            updates.append(update)
        frames.append((at, updates))
    return frames, changed


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=update_plans(6))
def test_a_panel_does_dom_work_only_when_its_own_data_changed(
    optimised: LivePage, market: list[str], plan: list[tuple[int, list[tuple[str, int, bool, int]]]]
) -> None:
    """Feature: trading-performance-optimization, Property 17: For any dashboard state change, only components with modified data should re-render

    The real page, fed any mix of moved and repeated quotes for rows on screen, holdings, watched symbols and
    symbols on no panel: each panel writes to the DOM if and only if a quote it shows moved; the trades,
    leaderboard and analytics panels, whose data the feed never touches, write nothing."""  # noqa: E501
    in_view = optimised.rows_in_dom()
    frames, changed = build_frames(optimised, market, plan)
    work = optimised.feed(frames)
    assert work["applies"] > 0
    shows = {
        "market-rows": in_view,
        "portfolio": {market[i] for i in HELD},
        "watchlist": {market[i] for i in WATCHED},
        "symbol-quote": {market[WATCHED[0]]},
        "orders": set(),
        "leaderboard": set(),
        "analytics": set(),
    }
    rendered = {panel for panel in PANELS if work["counts"].get(panel, 0) > 0}
    assert rendered == {panel for panel, symbols in shows.items() if symbols & changed}, work


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=update_plans(3))  # the naive page rebuilds 500 rows a frame: a few frames keep the test short
def test_the_optimised_page_does_at_most_half_the_dom_work_of_the_naive_page_for_the_same_feed(
    optimised: LivePage, naive: LivePage, market: list[str], plan: list[tuple[int, list[tuple[str, int, bool, int]]]]
) -> None:
    """Feature: trading-performance-optimization, Property 40: For any active trading period, frontend optimizations should reduce CPU usage by 50%

    The same page in its two modes (`/` and `/?render=naive`, which re-renders the whole table on each message)
    gets the same frames at the same times: the optimised page writes at most half as much to the DOM, and shows
    the same prices on every row on screen that the frames moved."""  # noqa: E501
    frames, _changed = build_frames(optimised, market, plan)
    work = optimised.feed(frames)
    baseline = naive.feed(frames)
    assert baseline["total"] > 0
    assert work["total"] <= 0.5 * baseline["total"], (work, baseline)
    fed = sorted({update["symbol"] for _, updates in frames for update in updates} & optimised.rows_in_dom())
    assert optimised.prices_shown(fed) == naive.prices_shown(fed)


def test_a_conflation_notice_from_the_server_is_shown_to_the_trader(optimised: LivePage) -> None:
    """Error Handling, "Message Queue Overflow": the hub's notice frame reaches the trader as a message."""
    page = optimised.page
    notice = notice_frame("updates_conflated", "your connection is behind the feed", timestamp=1)  # the hub's own
    page.evaluate("(text) => window.__work.schedule([{at: 0, text}])", notice)
    page.clock.run_for(10)
    assert page.evaluate("window.__stats.notices") == 1
    assert "updates are being conflated" in page.locator("#messages").inner_text()
