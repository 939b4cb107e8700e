"""The beat tasks run in a real worker, and overlapping runs are skipped."""

import time

import pytest
from django.conf import settings

from apps.core.redis import key, redis_client
from apps.monitoring.models import MetricSample
from apps.monitoring.tasks import record_sample, single_run


def test_the_beat_schedule_samples_every_few_seconds_and_evaluates_every_fifteen() -> None:
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["monitoring-record-sample"]["schedule"] == 5.0
    assert schedule["monitoring-evaluate-alerts"]["schedule"] == 15.0
    assert schedule["monitoring-prune-samples"]["task"] == "monitoring.prune_samples"


@pytest.mark.django_db(transaction=True)
def test_a_worker_records_a_sample_when_beat_asks(celery_worker_process: object) -> None:
    record_sample.delay()
    deadline = time.monotonic() + 20
    while not MetricSample.objects.exists():
        assert time.monotonic() < deadline, "no sample recorded by the worker"
        time.sleep(0.2)
    sample = MetricSample.objects.get()
    assert sample.figures["memory_percent"] is not None


def test_a_second_run_while_one_holds_the_lock_is_skipped(db: None) -> None:
    with single_run("record", 30) as first:
        assert first
        record_sample()  # skipped: the lock is held
        assert not MetricSample.objects.exists()
    assert not redis_client().exists(key("monitoring", "lock", "record"))
    record_sample()
    assert MetricSample.objects.count() == 1
