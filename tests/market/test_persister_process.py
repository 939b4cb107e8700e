import os
import signal
import subprocess
import sys

import pytest

from apps.core.redis import redis_client
from apps.market.models import TickBucket
from apps.market.stream import CONSUMER_GROUP, stage_append, stream_key
from tests.conftest import BASE_DIR, service_env
from tests.market.engine_fakes import numbered_ticks
from tests.wait import wait_until

FIRST, SECOND = 8_000, 2_000


def start_persister() -> subprocess.Popen[bytes]:
    argv = [sys.executable, "manage.py", "persist_ticks", "--consumer", "persister@test-host", "--skip-checks"]
    return subprocess.Popen(argv, cwd=BASE_DIR, env=service_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def append(ticks: list) -> None:  # type: ignore[type-arg]
    pipe = redis_client().pipeline(transaction=False)
    stage_append(pipe, ticks)
    pipe.execute()


def stored_tick_ids() -> list[str]:
    return [
        tick_id for document in TickBucket.collection().find({}, {"tick_ids": 1}) for tick_id in document["tick_ids"]
    ]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_persister_killed_mid_stream_and_restarted_stores_every_tick_exactly_once() -> None:
    collection = TickBucket.collection()
    ticks = numbered_ticks(FIRST + SECOND)
    append(ticks[:FIRST])
    persister = start_persister()
    try:
        wait_until(lambda: collection.estimated_document_count() > 0, timeout=60, what="the first insert")
        os.kill(persister.pid, signal.SIGKILL)  # mid-stream: some stored, some pending or unread
        persister.wait(timeout=10)
        stored_at_kill = len(stored_tick_ids())
        assert 0 < stored_at_kill < FIRST
        append(ticks[FIRST:])  # the market goes on while the persister is down
        persister = start_persister()
        wait_until(lambda: redis_client().xlen(stream_key()) == 0, timeout=90, what="the backlog to drain")
    finally:
        persister.send_signal(signal.SIGTERM)
        _, errors = persister.communicate(timeout=20)
    assert persister.returncode == 0, errors.decode()[-2000:]
    stored = stored_tick_ids()
    assert len(stored) == len(set(stored)) == FIRST + SECOND
    assert redis_client().xpending(stream_key(), CONSUMER_GROUP)["pending"] == 0
