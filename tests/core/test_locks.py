"""The per-key lock against the real Redis: one holder at a time, freed when a holder dies, never fatal."""

import threading
import time

import pytest
import redis

from apps.core.locks import LockTimeout, one_at_a_time
from apps.core.redis import key, redis_client


def test_holders_of_one_key_never_overlap_and_all_get_their_turn() -> None:
    inside, most, served = 0, 0, 0
    guard = threading.Lock()

    def hold() -> None:
        nonlocal inside, most, served
        with one_at_a_time("k", wait_seconds=10):
            with guard:
                inside += 1
                most = max(most, inside)
            time.sleep(0.002)  # the work under the lock
            with guard:
                inside -= 1
                served += 1

    threads = [threading.Thread(target=hold) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (most, served) == (1, 30)


def test_a_lock_whose_holder_died_is_free_once_its_lease_runs_out() -> None:
    redis_client().set(key("lock", "dead"), "a holder that was killed", px=300)  # it never releases
    started = time.monotonic()
    with one_at_a_time("dead", wait_seconds=5) as held:
        assert held
    assert 0.2 < time.monotonic() - started < 3


def test_a_holder_past_its_lease_cannot_release_its_successor() -> None:
    name = key("lock", "late")
    with one_at_a_time("late", wait_seconds=1, lease_seconds=30):
        redis_client().set(name, "successor", px=30_000)  # our lease ran out and another took the lock
    assert redis_client().get(name) == b"successor"


def test_waiting_longer_than_the_budget_raises() -> None:
    redis_client().set(key("lock", "busy"), "someone", px=10_000)
    with pytest.raises(LockTimeout), one_at_a_time("busy", wait_seconds=0.05):
        pytest.fail("must not run")


def test_with_redis_down_the_section_runs_unlocked() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    with one_at_a_time("any", wait_seconds=1, client=dead) as held:
        assert held is False
