"""Admission control: a full server process refuses at once with 503 + Retry-After, never calling the app."""

import asyncio
import contextlib
from collections import deque
from typing import Any

from apps.core.admission import AdmissionControl


class HeldApp:
    """An app whose requests stay in flight until released; counts the calls it gets."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def request(app: Any, path: str = "/api/v1/me") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "headers": []}, receive, send)
    return sent


def test_an_overloaded_worker_answers_503_with_retry_after_without_calling_the_view() -> None:
    async def scenario() -> None:
        inner = HeldApp()
        app = AdmissionControl(inner, max_in_flight=2)
        admitted = [asyncio.create_task(request(app)) for _ in range(2)]
        while inner.calls < 2:
            await asyncio.sleep(0)
        refused = await request(app)
        assert inner.calls == 2  # the third request never reached the app
        start = refused[0]
        assert start["status"] == 503
        assert dict(start["headers"])[b"retry-after"] == b"1"
        assert b'"code":"overloaded"' in refused[1]["body"]
        inner.release.set()
        assert [(await task)[0]["status"] for task in admitted] == [200, 200]
        assert app.in_flight == 0
        assert (await request(app))[0]["status"] == 200  # capacity is back once they finish

    asyncio.run(scenario())


def test_health_checks_are_never_refused() -> None:
    async def scenario() -> None:
        inner = HeldApp()
        app = AdmissionControl(inner, max_in_flight=1)
        held = asyncio.create_task(request(app))
        while inner.calls < 1:
            await asyncio.sleep(0)
        inner.release.set()
        assert (await request(app, "/healthz"))[0]["status"] == 200
        await held

    asyncio.run(scenario())


def test_a_failing_request_gives_its_slot_back() -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def scenario() -> None:
        app = AdmissionControl(failing, max_in_flight=1)
        for _ in range(3):
            with contextlib.suppress(RuntimeError):
                await request(app)
        assert app.in_flight == 0

    asyncio.run(scenario())


class StuckLoopApp:
    """An app that holds the event loop in chunks of CPU work without an await, as a stream of hot reads does."""

    def __init__(self, busy_seconds: float, chunks: int = 1) -> None:
        self.calls = 0
        self.busy_seconds = busy_seconds
        self.chunks = chunks

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        import time

        self.calls += 1
        for _ in range(self.chunks):
            until = time.monotonic() + self.busy_seconds
            while time.monotonic() < until:  # the loop runs nothing else meanwhile
                pass
            await asyncio.sleep(0)  # other callbacks (the lag probe) run, late
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def test_one_slow_request_is_not_an_overload() -> None:
    async def scenario() -> None:
        inner = StuckLoopApp(busy_seconds=0.1)
        app = AdmissionControl(inner, max_in_flight=100, max_lag_ms=20)
        assert (await request(app))[0]["status"] == 200  # starts the probe; holds the loop 100 ms (a cold start)
        while app.lag.seconds <= 0.02:  # the probe woke ~95 ms late, once
            await asyncio.sleep(0)
        assert not app.lag.overloaded
        assert (await request(app))[0]["status"] == 200

    asyncio.run(scenario())


def test_a_loop_that_stays_behind_refuses_new_requests_until_it_keeps_up_again() -> None:
    async def scenario() -> None:
        inner = StuckLoopApp(busy_seconds=0.03, chunks=8)
        app = AdmissionControl(inner, max_in_flight=100, max_lag_ms=20)
        busy = asyncio.create_task(request(app))  # holds the loop 30 ms at a time, 8 times
        while not app.lag.overloaded:  # three probes in a row woke > 20 ms late
            await asyncio.sleep(0)
        refused = await request(app)
        assert refused[0]["status"] == 503 and dict(refused[0]["headers"])[b"retry-after"] == b"1"
        assert inner.calls == 1  # refused before the app
        assert (await busy)[0]["status"] == 200
        while app.lag.overloaded:  # the next probe on time ends it
            await asyncio.sleep(0.005)
        assert (await request(app))[0]["status"] == 200

    asyncio.run(scenario())


def test_without_a_lag_bound_only_requests_in_flight_are_counted() -> None:
    async def scenario() -> None:
        inner = StuckLoopApp(busy_seconds=0.03, chunks=8)
        app = AdmissionControl(inner, max_in_flight=100)
        busy = asyncio.create_task(request(app))
        while inner.calls == 0:
            await asyncio.sleep(0)
        assert (await request(app))[0]["status"] == 200
        assert (await busy)[0]["status"] == 200

    asyncio.run(scenario())


class ParkingApp(HeldApp):
    """Requests that wait on another process (as an order awaits the engine) inside `parked()`."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from apps.core.admission import parked

        self.calls += 1
        with parked():
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def test_requests_waiting_on_another_process_give_their_slot_to_others_up_to_the_parking_bound() -> None:
    async def scenario() -> None:
        inner = ParkingApp()
        app = AdmissionControl(inner, max_in_flight=2, max_parked=3)
        waiting = [asyncio.create_task(request(app)) for _ in range(5)]
        while inner.calls < 5:  # two slots served five: three of them parked
            await asyncio.sleep(0)
        assert (app.in_flight, app.parked) == (2, 3)  # the fourth and fifth kept their slots: full
        assert (await request(app))[0]["status"] == 503
        inner.release.set()
        assert [(await task)[0]["status"] for task in waiting] == [200] * 5
        assert (app.in_flight, app.parked) == (0, 0)

    asyncio.run(scenario())


def test_parking_outside_an_admitted_request_changes_nothing() -> None:
    from apps.core.admission import parked

    with parked():  # admin, a management command, a test: no admission control around it
        pass


async def holding_the_only_slot(max_wait_ms: float) -> tuple[HeldApp, AdmissionControl, asyncio.Task[Any]]:
    """A process with one slot, taken by a request the app holds until released."""
    inner = HeldApp()
    app = AdmissionControl(inner, max_in_flight=1, max_wait_ms=max_wait_ms)
    held = asyncio.create_task(request(app))
    while inner.calls < 1:
        await asyncio.sleep(0)
    return inner, app, held


async def waiting_for_a_slot(app: AdmissionControl) -> asyncio.Task[Any]:
    waiting = asyncio.create_task(request(app))  # a burst: waits for the slot, not refused
    while not app._waiting:
        await asyncio.sleep(0)
    return waiting


def test_a_full_process_whose_loop_keeps_up_hands_a_freed_slot_to_the_request_waiting_for_it() -> None:
    async def scenario() -> None:
        inner, app, first = await holding_the_only_slot(max_wait_ms=1000)
        second = await waiting_for_a_slot(app)
        assert inner.calls == 1 and len(app._waiting) == 1
        inner.release.set()
        assert [(await first)[0]["status"], (await second)[0]["status"]] == [200, 200]
        assert inner.calls == 2 and app.in_flight == 0 and not app._waiting

    asyncio.run(scenario())


def test_a_request_waits_for_a_slot_at_most_max_wait_then_is_refused() -> None:
    async def scenario() -> None:
        inner, app, held = await holding_the_only_slot(max_wait_ms=20)
        refused = await request(app)  # nothing frees the slot within 20 ms
        assert refused[0]["status"] == 503 and inner.calls == 1 and not app._waiting
        inner.release.set()
        await held
        assert app.in_flight == 0

    asyncio.run(scenario())


def test_a_slot_handed_to_a_request_that_gives_up_at_that_moment_is_passed_on_not_lost() -> None:
    async def scenario() -> None:
        inner, app, held = await holding_the_only_slot(max_wait_ms=1000)
        waiting = await waiting_for_a_slot(app)
        app.release()  # the holder parks: its slot is handed to the waiting request...
        waiting.cancel()  # ...whose client disconnects before it runs
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        app.in_flight += 1  # the holder's answer arrived: it counts again (as parked() does)
        inner.release.set()
        await held
        assert (app.in_flight, app._waiting) == (0, deque())

    asyncio.run(scenario())
