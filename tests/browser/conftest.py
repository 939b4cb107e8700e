"""Browser fixtures: Debian's Chromium through Playwright, a live daphne on the test services, a market.

The server is a real `daphne` subprocess on a free port with `service_env()`,
so the page talks to the same SecantusDB database and Redis database as the
test. Ticks reach the page the way the simulator sends them: staged on one
Redis pipeline with `stage_quotes` and `stage_publish`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from playwright.sync_api import Browser, BrowserContext, BrowserType, Page, Playwright, sync_playwright

from apps.core.redis import redis_client
from apps.market.feed.publish import stage_publish
from apps.market.models import Symbol
from apps.market.quotes import stage_quotes
from apps.market.services import symbols_seed
from apps.market.ticks import Tick
from apps.portfolio.services import trader_create
from tests.conftest import BASE_DIR, EngineThread, missing_tool, running_engines, service_env
from trading.devstack import CHROMIUM, CHROMIUM_ARGS, free_port, port_in_use, wait_for_port

MARKET_SIZE = 500
# Playwright's sync API keeps an event loop running in the test thread, which makes Django refuse ORM calls
# from the test itself (setting up traders and sessions). Only the test process gets this; the server does not.
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


@pytest.fixture(scope="package", autouse=True)
def _allow_orm_calls_beside_playwrights_loop() -> Iterator[None]:
    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    yield
    if previous is None:
        os.environ.pop(ASYNC_UNSAFE, None)
    else:
        os.environ[ASYNC_UNSAFE] = previous


# Playwright's sync API runs an event loop in the main thread while it is started. pytest-playwright starts
# it once per session, so every test after the first browser test would find a loop running (asyncio.run()
# refuses). Here it lives as long as this package's tests: started before the first, stopped after the last,
# whichever worker and whatever order they run in (make test runs them all on one worker: one Chromium).
@pytest.fixture(scope="package")
def playwright(_pw_api_request_contexts: Any) -> Iterator[Playwright]:
    running = sync_playwright().start()
    if _pw_api_request_contexts:
        _pw_api_request_contexts.instrument(running)
    yield running
    running.stop()


@pytest.fixture(scope="package")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    return getattr(playwright, browser_name)  # type: ignore[no-any-return]


@pytest.fixture(scope="package")
def launch_browser(browser_type_launch_args: dict[str, Any], browser_type: BrowserType) -> Callable[..., Browser]:
    def launch(**kwargs: Any) -> Browser:
        return browser_type.launch(**{**browser_type_launch_args, **kwargs})

    return launch


@pytest.fixture(scope="package")
def browser(launch_browser: Callable[..., Browser]) -> Iterator[Browser]:
    launched = launch_browser()
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        missing_tool(f"{CHROMIUM} is missing (apt-get install chromium)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "headless": True, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="package")
def browser_context_args() -> dict[str, Any]:
    # Package-scoped like `playwright` above (pytest-playwright's own asks for the session's Playwright).
    # The page's Content-Security-Policy forbids eval, which Playwright's polling wait_for_function uses;
    # the functional tests bypass it, tests/browser/test_csp.py runs a context under it.
    return {"viewport": {"width": 1440, "height": 900}, "bypass_csp": True}


def server_env() -> dict[str, str]:
    return {name: value for name, value in service_env().items() if name != ASYNC_UNSAFE}


class DaphneServer:
    """A daphne process that can be stopped and started again on the same port (the reconnect test)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(f"/tmp/test-daphne-{self.port}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "trading.asgi:application"]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(argv, cwd=BASE_DIR, env=server_env(), stdout=out, stderr=out)
        wait_for_port(self.port, process=self.process, what="daphne", timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        deadline = time.monotonic() + 5
        while port_in_use(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture(scope="module")
def market(django_db_setup: None, django_db_blocker: Any) -> Iterator[list[str]]:
    """500 listed symbols for the module's tests; the database is emptied afterwards for the tests that follow."""
    with django_db_blocker.unblock():
        for _ in symbols_seed(count=MARKET_SIZE):
            pass
        tickers = list(Symbol.objects.order_by("ticker").values_list("ticker", flat=True))
    yield tickers
    with django_db_blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(scope="session")
def bundle() -> None:
    """The page's bundle built from the current sources (esbuild takes well under a second)."""
    subprocess.run(["npm", "run", "--silent", "build"], cwd=BASE_DIR, check=True, capture_output=True)


@pytest.fixture(scope="module")
def server(market: list[str], bundle: None) -> Iterator[DaphneServer]:
    running = DaphneServer()
    running.start()
    yield running
    running.stop()


def login(context: BrowserContext, server: DaphneServer, django_db_blocker: Any, username: str) -> None:
    """A trader with the starting cash, logged in through a real session cookie."""
    with django_db_blocker.unblock():
        trader, _token = trader_create(username=username, cash=Decimal("100000.00"), password="pass-" + username)
        client = Client()
        client.force_login(trader.user)
        session = client.cookies["sessionid"].value
    context.add_cookies([{"name": "sessionid", "value": session, "url": server.url}])


@pytest.fixture
def engines(django_db_blocker: Any, _clean_redis: None) -> Iterator[list[EngineThread]]:
    """The order engines for a browser test: the page's orders go through the server to them (the test's
    database is shared with the server, so it is unblocked for the engines' threads, as for the test)."""
    with django_db_blocker.unblock(), running_engines() as running:
        yield running


@pytest.fixture
def dashboard(
    page: Page,
    server: DaphneServer,
    engines: list[EngineThread],
    django_db_blocker: Any,
    request: pytest.FixtureRequest,
) -> Iterator[Page]:
    """The dashboard of a fresh trader, loaded and live."""
    login(page.context, server, django_db_blocker, f"b-{request.node.name[:40]}-{time.monotonic_ns() % 10**6}")
    page.goto(server.url + "/")
    wait_live(page)
    yield page


def wait_live(page: Page, timeout: float = 15_000) -> None:
    page.wait_for_selector("#connection[data-state=live]", timeout=timeout)
    page.wait_for_function("window.__stats && window.__stats.subscribed.length > 0", timeout=timeout)


def publish(ticks: Sequence[Tick]) -> None:
    """Ticks as the simulator sends them: latest quotes and per-symbol publish in one round trip."""
    pipe = redis_client().pipeline(transaction=False)
    stage_quotes(pipe, ticks)
    stage_publish(pipe, ticks)
    pipe.execute()


def tick(symbol: str, price: float, *, previous_close: float = 100.0, volume: int = 1000) -> Tick:
    return Tick(symbol, round(price, 2), previous_close, volume, int(time.time() * 1000))
