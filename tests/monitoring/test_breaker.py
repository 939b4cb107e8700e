"""The circuit breaker, alone with a fake clock and in front of a real (local) webhook receiver."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from apps.core.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitOpen
from apps.monitoring import notify


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def failing() -> None:
    raise OSError("receiver down")


def test_the_breaker_opens_after_n_failures_and_then_fails_fast() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures_to_open=3, cooldown_seconds=60, clock=clock)
    calls = []
    for _ in range(3):
        with pytest.raises(OSError):
            breaker.call(lambda: calls.append(1) or failing())
    assert breaker.state == OPEN
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: calls.append(1))
    assert len(calls) == 3  # the refused call never ran


def test_a_success_before_the_limit_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failures_to_open=2, cooldown_seconds=60, clock=FakeClock())
    with pytest.raises(OSError):
        breaker.call(failing)
    breaker.call(lambda: None)
    with pytest.raises(OSError):
        breaker.call(failing)
    assert breaker.state == CLOSED


def test_after_the_cooldown_one_trial_closes_it_on_success() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures_to_open=1, cooldown_seconds=30, clock=clock)
    with pytest.raises(OSError):
        breaker.call(failing)
    clock.now += 29
    assert breaker.state == OPEN
    clock.now += 1
    assert breaker.state == HALF_OPEN
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state == CLOSED


def test_a_failed_trial_reopens_it_for_a_full_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures_to_open=2, cooldown_seconds=30, clock=clock)
    for _ in range(2):
        with pytest.raises(OSError):
            breaker.call(failing)
    clock.now += 30
    with pytest.raises(OSError):
        breaker.call(failing)
    assert breaker.state == OPEN
    clock.now += 29
    assert breaker.state == OPEN


def test_bad_breaker_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failures_to_open=0, cooldown_seconds=1)


# --- in front of a real receiver ------------------------------------------------------------
class Receiver(ThreadingHTTPServer):
    status = 200

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.bodies: list[dict] = []


class ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_webhook_stops_calling_a_failing_receiver_and_resumes_after_the_cooldown(
    receiver: Receiver, settings: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.ALERT_WEBHOOK_URL = f"http://127.0.0.1:{receiver.server_port}/hook"  # type: ignore[attr-defined]
    clock = FakeClock()
    breaker = CircuitBreaker(failures_to_open=2, cooldown_seconds=60, clock=clock)
    monkeypatch.setattr(notify, "webhook_breaker", lambda: breaker)
    receiver.status = 500
    outcomes = [notify.notify_webhook({"rule": "memory_percent"}) for _ in range(5)]
    assert outcomes == ["failed", "failed", "circuit_open", "circuit_open", "circuit_open"]
    assert len(receiver.bodies) == 2  # a dead receiver costs nothing once the circuit is open
    receiver.status = 204
    clock.now += 60
    assert notify.notify_webhook({"rule": "memory_percent"}) == "sent"
    assert breaker.state == CLOSED
    assert receiver.bodies[-1] == {"rule": "memory_percent"}
