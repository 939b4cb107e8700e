"""Dashboard CPU: the optimised page against `?render=naive`, same feed, same Chromium, same run (Property 40).

A publisher process sends 500 ticks/s over 500 symbols the way the simulator
does (`stage_quotes` + `stage_publish` on one pipeline, every 100 ms). A real
daphne serves the page and the WebSocket feed. Headless Chromium (Debian's)
loads each mode in turn; the DevTools protocol's `Performance.getMetrics`
gives the main thread's script, layout, style and task time over the window.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import psutil

from bench.common import BASE_DIR, progress, setup_django, table
from trading.devstack import CHROMIUM, CHROMIUM_ARGS

SYMBOLS = 500
TICKS_PER_SECOND = 500
METRICS = ("ScriptDuration", "LayoutDuration", "RecalcStyleDuration", "TaskDuration")

PUBLISHER = """
import os, random, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trading.settings")
import django; django.setup()
from apps.core.redis import redis_client
from apps.market.feed.publish import stage_publish
from apps.market.quotes import stage_quotes
from apps.market.ticks import Tick
symbols, rate = sys.argv[1].split(","), int(sys.argv[2])
prices = {s: 100.0 for s in symbols}
rng, client, per_batch = random.Random(7), redis_client(), rate // 10
while True:
    started = time.monotonic()
    ticks = []
    for symbol in rng.sample(symbols, per_batch):
        prices[symbol] = max(1.0, round(prices[symbol] * (1 + rng.gauss(0, 0.002)), 2))
        ticks.append(Tick(symbol, prices[symbol], 100.0, rng.randrange(10**6), int(time.time() * 1000)))
    pipe = client.pipeline(transaction=False)
    stage_quotes(pipe, ticks)
    stage_publish(pipe, ticks)
    pipe.execute()
    time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))
"""


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    from trading.devstack import wait_for_port

    wait_for_port(port, process=process, what="daphne", timeout=30)


def _measure(context: Any, url: str, seconds: float) -> dict[str, float]:
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#connection[data-state=live]", timeout=20_000)
    page.wait_for_function("window.__stats.subscribed.length > 0")
    page.wait_for_timeout(2000)  # settle: subscriptions joined, first frames in
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable", {"timeDomain": "threadTicks"})

    def snapshot() -> dict[str, float]:
        return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}

    before, stats_before, started = snapshot(), page.evaluate("({...window.__stats})"), time.monotonic()
    page.wait_for_timeout(seconds * 1000)
    after, stats_after, wall = snapshot(), page.evaluate("({...window.__stats})"), time.monotonic() - started
    result = {name: after[name] - before[name] for name in METRICS}
    result.update(
        wall=wall,
        frames=stats_after["frames"] - stats_before["frames"],
        updates=stats_after["updates"] - stats_before["updates"],
        applies=stats_after["applies"] - stats_before["applies"],
        rows=page.evaluate("document.querySelectorAll('#market-rows .mt-row').length"),
    )
    page.close()
    return result


def run(quick: bool) -> tuple[str, list[str]]:
    setup_django()
    from decimal import Decimal

    from django.contrib.auth.models import User
    from django.test import Client
    from playwright.sync_api import sync_playwright

    from apps.market.models import Symbol
    from apps.market.services import symbols_seed
    from apps.portfolio.services import trader_create
    from trading.devstack import free_port

    seconds = 10.0 if quick else 30.0
    for _ in symbols_seed(count=SYMBOLS):
        pass
    tickers = list(Symbol.objects.order_by("ticker").values_list("ticker", flat=True)[:SYMBOLS])
    if not User.objects.filter(username="bench-dashboard").exists():
        trader_create(username="bench-dashboard", cash=Decimal("100000.00"))
    client = Client()
    client.force_login(User.objects.get(username="bench-dashboard"))
    session = client.cookies["sessionid"].value

    port = free_port()
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "trading.asgi:application"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    publisher = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, ",".join(tickers), str(TICKS_PER_SECOND)], cwd=BASE_DIR, env=env
    )
    results: dict[str, dict[str, float]] = {}
    try:
        _wait_for_port(port, server)
        publisher_cpu = psutil.Process(publisher.pid)
        cpu_start, wall_start = sum(publisher_cpu.cpu_times()[:2]), time.monotonic()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            context.add_cookies([{"name": "sessionid", "value": session, "url": f"http://127.0.0.1:{port}"}])
            for mode, path in (("optimised", "/"), ("naive", "/?render=naive")):
                progress(f"dashboard_cpu: {mode} for {seconds:.0f} s")
                results[mode] = _measure(context, f"http://127.0.0.1:{port}{path}", seconds)
            browser.close()
        publisher_share = (sum(publisher_cpu.cpu_times()[:2]) - cpu_start) / (time.monotonic() - wall_start)
    finally:
        for process in (publisher, server):
            process.terminate()
            process.wait(timeout=10)

    def share(mode: str, metric: str) -> float:
        return results[mode][metric] / results[mode]["wall"] * 100

    rows = []
    for mode in ("naive", "optimised"):
        r = results[mode]
        rows.append(
            [
                "`?render=naive` (whole table rebuilt per message)" if mode == "naive" else "optimised (page default)",
                f"{share(mode, 'ScriptDuration'):.1f} %",
                f"{share(mode, 'LayoutDuration') + share(mode, 'RecalcStyleDuration'):.1f} %",
                f"{share(mode, 'TaskDuration'):.1f} %",
                int(r["rows"]),
                f"{r['frames'] / r['wall']:.1f}",
                f"{r['updates'] / r['wall']:.0f}",
                f"{r['applies'] / r['wall']:.1f}",
            ]
        )
    saving = 1 - results["optimised"]["TaskDuration"] / results["naive"]["TaskDuration"]
    script_saving = 1 - (
        (results["optimised"]["ScriptDuration"] + results["optimised"]["LayoutDuration"])
        / (results["naive"]["ScriptDuration"] + results["naive"]["LayoutDuration"])
    )
    missed = [f"Property 40: {saving:.0%} less main-thread time, target 50 %"] if saving < 0.5 else []
    headers = [
        "page",
        "script (of one core)",
        "layout + style",
        "main-thread tasks",
        "rows in DOM",
        "frames/s",
        "updates/s",
        "state applies/s",
    ]
    section = (
        f"## Dashboard CPU (Property 40)\n\n"
        f"{SYMBOLS} symbols, {TICKS_PER_SECOND} ticks/s from a publisher process, {seconds:.0f} s per page, "
        f"headless Chromium (DevTools `Performance.getMetrics`), both pages subscribed to the same visible rows.\n\n"
        + table(headers, rows)
        + f"\n\nThe optimised page spends **{saving:.0%} less main-thread time** than the naive re-render "
        f"({script_saving:.0%} less script + layout); Property 40 asks for 50 %, we aim for 80 %. "
        f"Load generator: {publisher_share:.0%} of one core."
    )
    return section, missed
