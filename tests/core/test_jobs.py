"""Jobs: retries back off exponentially with jitter, failures land in dead letters (exactly once for orders and
invoices, which are no jobs any more: tests/portfolio/test_properties.py and test_invoices.py, Property 35)."""

from __future__ import annotations

import itertools
import random
import time
from typing import Any
from unittest.mock import patch

import pytest
from celery import Task
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.core.jobs import (
    BACKOFF_JITTER,
    ReliableTask,
    backoff_delay,
    dead_letters_replay,
    registered_tasks,
)
from apps.core.models import DeadLetter
from trading.celery import app


@app.task(base=ReliableTask, name="tests.always_fails", max_retries=0)
def always_fails(reason: str) -> None:
    raise RuntimeError(reason)


# --- Property 30 --------------------------------------------------------------------------------


@hypothesis_settings(max_examples=300)
@given(retries=st.integers(0, 40), seed=st.integers(), base=st.floats(0.5, 10), maximum=st.floats(10, 3600))
def test_each_retry_waits_exponentially_longer_with_bounded_jitter(
    retries: int, seed: int, base: float, maximum: float
) -> None:
    """Feature: trading-performance-optimization, Property 30: For any failed background job, the system should retry
    with exponentially increasing delays"""
    rng = random.Random(seed)
    delay = backoff_delay(retries, base=base, maximum=maximum, rng=rng)
    next_delay = backoff_delay(retries + 1, base=base, maximum=maximum, rng=rng)
    ceiling = min(maximum, base * 2**retries)
    assert ceiling * (1 - BACKOFF_JITTER) <= delay <= ceiling
    if base * 2 ** (retries + 1) <= maximum:  # below the cap: strictly longer whatever the jitter drew
        assert next_delay > delay
    assert next_delay <= maximum


def test_a_failing_task_is_retried_with_the_backoff_delay() -> None:
    task = app.tasks["tests.always_fails"]
    with patch.object(Task, "retry") as parent_retry:
        task.push_request(retries=3)
        try:
            task.retry(exc=RuntimeError("boom"))
        finally:
            task.pop_request()
    countdown = parent_retry.call_args.kwargs["countdown"]
    assert 16 * (1 - BACKOFF_JITTER) <= countdown <= 16  # 2 s * 2**3


@pytest.mark.django_db
def test_a_job_that_fails_its_last_attempt_lands_in_the_dead_letters() -> None:
    result = always_fails.apply(args=["disk full"], task_id="dead-1")
    assert result.failed()
    letter = DeadLetter.objects.get(task_id="dead-1")
    assert letter.task_name == "tests.always_fails"
    assert letter.args == ["disk full"]
    assert "RuntimeError: disk full" in letter.error
    assert letter.attempts == 1


@pytest.mark.django_db
def test_replaying_dead_letters_sends_them_again_and_marks_them() -> None:
    letter = DeadLetter.objects.create(task_name="tests.always_fails", task_id="t1", args=["x"], error="e")
    with patch.object(always_fails, "apply_async") as send:
        assert dead_letters_replay([letter]) == 1
    send.assert_called_once_with(args=["x"], kwargs={})
    letter.refresh_from_db()
    assert letter.replayed_at is not None


@pytest.mark.django_db
def test_the_replay_command_filters_by_task_and_skips_replayed_letters(capsys: pytest.CaptureFixture[str]) -> None:
    DeadLetter.objects.create(task_name="tests.always_fails", task_id="a", args=["1"], error="e")
    DeadLetter.objects.create(task_name="tests.list_symbol", task_id="b", args=["ZZZ"], error="e")
    with patch.object(always_fails, "apply_async") as send:
        call_command("replay_dead_letters", "--task", "tests.always_fails")
        call_command("replay_dead_letters", "--task", "tests.always_fails")
    assert send.call_count == 1
    output = capsys.readouterr().out
    assert "[1/1] tests.always_fails a" in output
    assert "0 dead letter(s) to replay" in output


@pytest.mark.django_db
def test_the_replay_command_refuses_an_unknown_task() -> None:
    with pytest.raises(CommandError, match="--task: unknown task 'nope'"):
        call_command("replay_dead_letters", "--task", "nope")


@pytest.mark.django_db
def test_staff_can_replay_dead_letters_from_the_admin() -> None:
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("root", "root@example.com", "root-pass")
    client = Client()
    client.login(username="root", password="root-pass")
    letter = DeadLetter.objects.create(task_name="tests.always_fails", task_id="adm", args=["1"], error="e")
    with patch.object(always_fails, "apply_async") as send:
        response = client.post(
            reverse("admin:core_deadletter_changelist"),
            {"action": "replay", "_selected_action": [str(letter.pk)]},
            follow=True,
        )
    assert response.status_code == 200
    assert b"Replayed 1 of 1" in response.content
    send.assert_called_once()


# --- Schedules ------------------------------------------------------------------------------------


def test_the_beat_schedule_precomputes_at_least_every_minute_and_cleans_up_daily(settings: Any) -> None:
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["leaderboard-rebuild"]["task"] == "leaderboard.rebuild"
    assert schedule["leaderboard-rebuild"]["schedule"] <= 60
    assert schedule["analytics-refresh"]["schedule"] <= 60
    cleanup = schedule["prices-cleanup"]["schedule"]
    assert cleanup.remaining_estimate(cleanup.now()).total_seconds() <= 86_400
    tasks = registered_tasks()
    for name in ("leaderboard-rebuild", "analytics-refresh", "cache-warm", "prices-cleanup"):
        assert schedule[name]["task"] in tasks, name


# --- A real worker ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_scheduled_precompute_jobs(celery_worker_process: Any) -> None:
    from apps.analytics.models import AnalyticsState
    from apps.leaderboard.models import LeaderboardSnapshot

    app.send_task("leaderboard.rebuild")
    app.send_task("analytics.refresh")
    deadline = time.monotonic() + 30
    while not (LeaderboardSnapshot.objects.exists() and AnalyticsState.objects.exclude(computed_at=None).exists()):
        assert time.monotonic() < deadline, "the worker did not run the precompute jobs"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_failing_task_is_retried_by_the_real_worker_with_growing_delays_then_dead_lettered(
    celery_worker_process: Any,
) -> None:
    """Property 30 on a real worker and broker (its Hypothesis test above drives the backoff itself).

    A job that always fails, on a real worker and broker: each retry is scheduled base * 2**n ahead (jitter
    shortens it by at most a quarter), so every delay is longer than the one before; each attempt starts no
    earlier than its schedule; after the last one the job is a dead letter. (Base 0.5 s for this task: the
    measured delay also holds the worker's own time between the failure and the retry, at most 0.2 s here.)"""
    import json
    from datetime import datetime

    from apps.core.redis import key, redis_client
    from tests.worker_tasks import ATTEMPTS_KEY, fails_every_time

    run = f"run-{time.monotonic_ns()}"
    result = fails_every_time.apply_async(args=[run])
    deadline = time.monotonic() + 60
    while not DeadLetter.objects.filter(task_id=result.id).exists():
        assert time.monotonic() < deadline, "the job never reached the dead letters"
        time.sleep(0.05)
    notes = [json.loads(raw) for raw in redis_client().lrange(key(ATTEMPTS_KEY, run), 0, -1)]
    assert [note["retries"] for note in notes] == [0, 1, 2, 3]  # max_retries 3: four attempts
    delays = []
    for before, after in itertools.pairwise(notes):
        scheduled = datetime.fromisoformat(after["eta"]).timestamp()
        delay = scheduled - before["failed_at"]
        ceiling = 0.5 * 2 ** before["retries"]
        assert ceiling * (1 - BACKOFF_JITTER) <= delay <= ceiling + 0.2  # the backoff, jitter included
        assert after["started"] >= scheduled - 0.05  # the worker waited for it
        delays.append(delay)
    assert all(later > earlier for earlier, later in itertools.pairwise(delays))
    letter = DeadLetter.objects.get(task_id=result.id)
    assert letter.task_name == "tests.fails_every_time" and letter.attempts == 4
