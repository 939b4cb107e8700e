"""Property tests of the dashboard's browser logic, run as the real ES modules under node (no mirror).

One node process answers every example over a pipe, so a hundred examples cost milliseconds each.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import missing_tool

RUNNER = Path(__file__).with_name("dashboard_js.mjs")
INTERVAL_MS = 100
QUOTE_FIELDS = ("price", "change", "change_percent", "volume")


class NodeModules:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            ["node", "--no-warnings", str(RUNNER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def call(self, fn: str, **args: Any) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"fn": fn, "args": args}) + "\n")
        answer = json.loads(self.process.stdout.readline())
        if "error" in answer:
            raise AssertionError(answer["error"])
        return answer["ok"]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=5)


@pytest.fixture(scope="module")
def js() -> Iterator[NodeModules]:
    if shutil.which("node") is None:
        missing_tool("node is not installed")
    modules = NodeModules()
    yield modules
    modules.close()


symbols = st.sampled_from(["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"])
prices = st.integers(min_value=1, max_value=100_000).map(lambda cents: cents / 100)
updates = st.builds(
    lambda symbol, price, change, volume, timestamp: {
        "symbol": symbol,
        "price": price,
        "change": change,
        "change_percent": round(change / 10, 2),
        "volume": volume,
        "timestamp": timestamp,
    },
    symbols,
    prices,
    st.integers(min_value=-500, max_value=500).map(lambda cents: cents / 100),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=1, max_value=50),
)


@settings(max_examples=200, deadline=None)
@given(
    scroll_top=st.floats(min_value=-500, max_value=100_000, allow_nan=False),
    viewport_height=st.integers(min_value=1, max_value=2_000),
    row_height=st.integers(min_value=10, max_value=60),
    total=st.integers(min_value=0, max_value=5_000),
)
def test_only_the_rows_in_view_are_rendered(
    js: NodeModules, scroll_top: float, viewport_height: int, row_height: int, total: int
) -> None:
    """Feature: trading-performance-optimization, Property 18: For any stock list exceeding 50 items, the frontend should implement virtual scrolling"""  # noqa: E501
    got = js.call(
        "visibleRange", scrollTop=scroll_top, viewportHeight=viewport_height, rowHeight=row_height, total=total
    )
    assert got["virtualise"] == (total > 50)
    start, end = got["start"], got["end"]
    assert 0 <= start <= end <= total
    assert got["offset"] == start * row_height
    # every row that intersects the viewport is rendered ...
    top = min(max(0.0, scroll_top), max(0, total * row_height - viewport_height))
    first = math.floor(top / row_height)
    last = min(total, math.ceil((top + viewport_height) / row_height))
    if total:
        assert start <= first and last <= end
    # ... and no more than a screenful plus the overscan on each side, whatever the list length
    assert end - start <= math.ceil(viewport_height / row_height) + 1 + 2 * 4


arrivals = st.lists(
    st.builds(lambda at, batch: {"at": at, "updates": batch}, st.integers(0, 5_000), st.lists(updates, max_size=8)),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(frames=arrivals)
def test_updates_are_applied_at_most_ten_times_a_second_and_none_is_lost(
    js: NodeModules, frames: list[dict[str, Any]]
) -> None:
    """Feature: trading-performance-optimization, Property 20: For any sequence of real-time updates, state changes should be debounced to at most 10 updates per second"""  # noqa: E501
    applies = js.call("simulateBatcher", intervalMs=INTERVAL_MS, arrivals=frames)["applies"]
    times = [a["at"] for a in applies]
    assert all(later - earlier >= INTERVAL_MS for earlier, later in itertools.pairwise(times))
    assert all(sum(1 for t in times if start <= t < start + 1000) <= 10 for start in times)
    # no update waits more than one interval after it arrived (timers fire on time under the fake clock)
    received = [f for f in frames if f["updates"]]
    assert bool(applies) == bool(received)
    for frame in received:
        assert any(frame["at"] <= t <= frame["at"] + INTERVAL_MS for t in times)
    # within a batch the newest update of a symbol wins (the store keeps latest-wins across batches)
    for apply in applies:
        assert len({u["symbol"] for u in apply["batch"]}) == len(apply["batch"])
    newest_applied = {}
    for update in (u for apply in applies for u in apply["batch"]):
        newest_applied[update["symbol"]] = max(newest_applied.get(update["symbol"], 0), update["timestamp"])
    newest_sent = {}
    for update in (u for f in frames for u in f["updates"]):
        newest_sent[update["symbol"]] = max(newest_sent.get(update["symbol"], 0), update["timestamp"])
    assert newest_applied == newest_sent


@settings(max_examples=200, deadline=None)
@given(
    start=st.lists(updates, min_size=1, max_size=6, unique_by=lambda u: u["symbol"]),
    batch=st.lists(updates, max_size=12),
)
def test_an_update_changes_only_the_cells_whose_values_moved(
    js: NodeModules, start: list[dict[str, Any]], batch: list[dict[str, Any]]
) -> None:
    """Feature: trading-performance-optimization, Property 16: For any stock price update, only the affected table rows should re-render, not the entire table"""  # noqa: E501
    result = js.call("quoteUpdates", quotes=start, updates=batch)
    changes = result["changes"]
    expected: dict[str, dict[str, Any]] = {q["symbol"]: dict(q) for q in start}
    moved: dict[str, set[str]] = {}
    for update in batch:
        quote = expected.get(update["symbol"])
        if quote is None or update["timestamp"] < quote["timestamp"]:
            continue
        fields = {f for f in QUOTE_FIELDS if update[f] != quote[f]}
        quote.update({f: update[f] for f in fields}, timestamp=update["timestamp"])
        if fields:
            moved.setdefault(update["symbol"], set()).update(fields)
    assert set(changes) == set(moved)  # rows without a moved value are not touched
    for symbol, change in changes.items():
        assert set(change["fields"]) == moved[symbol]
    assert {q["symbol"]: q for q in result["quotes"]} == expected


slices = st.sampled_from(["portfolio", "orders", "leaderboard", "analytics", "watchlist"])
values = st.one_of(
    st.none(),
    st.integers(0, 3),
    st.lists(st.integers(0, 2), max_size=3),
    st.fixed_dictionaries({"cash": st.sampled_from(["1.00", "2.00"])}),
)


@settings(max_examples=200, deadline=None)
@given(sets=st.lists(st.tuples(slices, values), max_size=30))
def test_a_panel_re_renders_only_when_its_own_data_changed(js: NodeModules, sets: list[tuple[str, Any]]) -> None:
    """Feature: trading-performance-optimization, Property 17: For any dashboard state change, only components with modified data should re-render"""  # noqa: E501
    initial: dict[str, Any] = {
        "portfolio": None,
        "orders": None,
        "leaderboard": None,
        "analytics": None,
        "watchlist": None,
    }
    notified = js.call("storeSequence", initial=initial, sets=sets)["notified"]
    current = dict(initial)
    expected: dict[str, int] = {}
    for slice_name, value in sets:
        if current[slice_name] != value or type(current[slice_name]) is not type(value):
            expected[slice_name] = expected.get(slice_name, 0) + 1
            current[slice_name] = value
    assert notified == expected
