"""Metrics: every kind of operation is measured, and /metrics shows every process' numbers."""

import re
import shlex
import subprocess
import sys
from types import SimpleNamespace

import pytest
from celery import signals
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from apps.core import metrics
from apps.core.request_scope import record_cache_lookup
from apps.monitoring.instrumentation import ProcessSampler, QueryMetricsListener, index_label, process_role
from apps.monitoring.middleware import RequestMetricsMiddleware
from tests.conftest import BASE_DIR, service_env

METRICS_BY_SAMPLE = {
    "trading_db_query_seconds_count": metrics.DB_QUERY,
    "trading_db_query_failures_total": metrics.DB_QUERY_FAILURES,
    "trading_api_request_seconds_count": metrics.API_LATENCY,
    "trading_task_seconds_count": metrics.TASK_DURATION,
    "trading_task_retries_total": metrics.TASK_RETRIES,
    "trading_task_failures_total": metrics.TASK_FAILURES,
}


def sample(name: str, **labels: str) -> float:
    """This process' value of one series (collecting one metric, not the whole registry)."""
    metric = METRICS_BY_SAMPLE.get(name)
    if metric is None:
        return REGISTRY.get_sample_value(name, labels) or 0.0
    for family in metric.collect():
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return 0.0


def scrape(client: Client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.content.decode()


def scraped_value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


# --- Property 31 ------------------------------------------------------------------------------------
db_operation = st.tuples(
    st.just("db"),
    st.sampled_from(["market_symbol", "portfolio_order", "core_deadletter"]),
    st.sampled_from(["find", "aggregate", "insert", "update", "delete"]),
    st.integers(min_value=1, max_value=500_000),
    st.booleans(),  # failed
)
api_operation = st.tuples(
    st.just("api"),
    st.sampled_from(["api/v1/orders", "api/v1/portfolio", "api/v1/symbols/<str:ticker>"]),
    st.sampled_from([200, 201, 404, 422, 429]),
    st.sampled_from([[], ["l1_hit"], ["l2_hit", "miss"], ["hit"]]),
    st.none(),
)
task_operation = st.tuples(
    st.just("task"),
    st.sampled_from(["jobs.alpha", "jobs.beta"]),
    st.sampled_from(["ok", "retry", "failure"]),
    st.none(),
    st.none(),
)


class FakeTask:
    """What Celery's signals carry: something hashable with a name."""

    def __init__(self, name: str) -> None:
        self.name = name


def _command(collection: str, operation: str) -> dict:
    command = {operation: collection}
    if operation == "find":
        command["filter"] = {"ticker": "ACME"}
    elif operation == "aggregate":
        command["pipeline"] = [{"$match": {"name": "x"}}]
    elif operation in {"update", "delete"}:
        command["updates" if operation == "update" else "deletes"] = [{"q": {"_id": 1}}]
    return command


@settings(max_examples=100, deadline=None)
@given(operations=st.lists(st.one_of(db_operation, api_operation, task_operation), max_size=25))
def test_every_operation_is_measured_under_its_labels(operations: list[tuple]) -> None:
    """Feature: trading-performance-optimization, Property 31: For any system operation, relevant performance metrics
    should be logged and tracked"""
    listener = QueryMetricsListener()
    factory = RequestFactory()
    leading = {"market_symbol": frozenset({"_id", "ticker"}), "portfolio_order": frozenset({"_id", "trader_id"})}
    expected: dict[tuple[str, tuple], float] = {}

    def expect(name: str, labels: dict[str, str]) -> None:
        key = (name, tuple(sorted(labels.items())))
        if key not in expected:
            expected[key] = sample(name, **labels)
        expected[key] += 1

    for number, (kind, first, second, third, fourth) in enumerate(operations):
        if kind == "db":
            command = _command(first, second)
            label = index_label(first, second, command, leading)
            listener_labels = {"collection": first, "operation": second, "index_used": label}
            expect("trading_db_query_seconds_count", listener_labels)
            if fourth:
                expect("trading_db_query_failures_total", {"collection": first, "operation": second})
            event = SimpleNamespace(
                command_name=second, command=command, connection_id=("h", 1), request_id=number, duration_micros=third
            )
            listener.started(event)  # type: ignore[arg-type]
            (listener.failed if fourth else listener.succeeded)(event)  # type: ignore[arg-type]
        elif kind == "api":
            cache = "none" if not third else "hit" if all(r.endswith("hit") for r in third) else "miss"
            labels = {"endpoint": first, "method": "GET", "status": str(second), "cache": cache}
            expect("trading_api_request_seconds_count", labels)
            request = factory.get("/" + first.replace("<str:ticker>", "ACME"))
            request.resolver_match = SimpleNamespace(route=first)  # type: ignore[assignment]

            def view(request: object, lookups: list[str] = third, status: int = second) -> HttpResponse:
                for result in lookups:
                    record_cache_lookup(result)
                return HttpResponse(status=status)

            RequestMetricsMiddleware(view)(request)
        else:
            task = FakeTask(first)
            task_id = f"task-{number}"
            expect("trading_task_seconds_count", {"task": first})
            signals.task_prerun.send(sender=task, task_id=task_id, task=task)
            if second == "retry":
                expect("trading_task_retries_total", {"task": first})
                signals.task_retry.send(sender=task, request=None, reason="again")
            if second == "failure":
                expect("trading_task_failures_total", {"task": first})
                signals.task_failure.send(sender=task, task_id=task_id, exception=RuntimeError("x"))
            signals.task_postrun.send(sender=task, task_id=task_id, task=task)
    for (name, labels), value in expected.items():
        assert sample(name, **dict(labels)) == value, (name, labels)


def test_index_used_is_predicted_from_the_filter() -> None:
    leading = {"market_pricetick": frozenset({"_id", "symbol", "recorded_at"})}
    find = {"find": "market_pricetick", "filter": {"symbol": "ACME"}}
    scan = {"aggregate": "market_pricetick", "pipeline": [{"$match": {"price": {"$gt": 1}}}]}
    anded = {"aggregate": "market_pricetick", "pipeline": [{"$match": {"$and": [{"price": 1}, {"symbol": "A"}]}}]}
    expr = {"aggregate": "market_pricetick", "pipeline": [{"$match": {"$expr": {"$eq": ["$symbol", "A"]}}}]}
    assert index_label("market_pricetick", "find", find, leading) == "yes"
    assert index_label("market_pricetick", "aggregate", scan, leading) == "no"
    assert index_label("market_pricetick", "aggregate", anded, leading) == "yes"
    assert index_label("market_pricetick", "aggregate", expr, leading) == "yes"
    assert index_label("market_pricetick", "aggregate", {"pipeline": []}, leading) == "no"
    assert index_label("market_pricetick", "insert", {}, leading) == "n/a"


def test_real_queries_are_timed_by_the_registered_listener(db: None) -> None:
    from apps.market.models import Symbol

    labels = {"collection": "market_symbol", "operation": "aggregate", "index_used": "yes"}
    before = sample("trading_db_query_seconds_count", **labels)
    list(Symbol.objects.filter(ticker="NOPE"))
    assert sample("trading_db_query_seconds_count", **labels) == before + 1


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["/venv/bin/daphne", "-b", "127.0.0.1", "trading.asgi:application"], "web"),
        (["/venv/lib/python3.11/site-packages/daphne/__main__.py", "-p", "8000"], "web"),
        (["/venv/bin/uvicorn", "trading.asgi:application"], "web"),
        (["/app/trading/serve.py", "--port", "8000", "trading.asgi:application"], "web"),
        (["/venv/bin/celery", "-A", "trading", "worker", "--concurrency", "2"], "worker"),
        (["/venv/bin/celery", "-A", "trading", "beat"], "beat"),
        (["manage.py", "run_market", "--seed", "7"], "market"),
        (["manage.py", "runserver"], "web"),
        (["manage.py", "persist_ticks"], "persister"),
        (["manage.py", "run_something_new"], "something_new"),
        (["manage.py", "migrate"], None),
        (["/venv/bin/pytest", "tests"], None),
    ],
)
def test_the_process_role_comes_from_the_command_line(argv: list[str], role: str | None) -> None:
    assert process_role(argv) == role


def python_argv(command: str) -> list[str]:
    """sys.argv of the Python process a Procfile command starts (`python -m pkg.mod` -> pkg/mod.py)."""
    words = shlex.split(command)
    if words[0] == "python":
        words = words[1:]
        if words[0] == "-m":
            words = [str(BASE_DIR / (words[1].replace(".", "/") + ".py")), *words[2:]]
    return words


def test_every_procfile_process_has_a_role_so_it_samples_memory_and_sheds_under_pressure() -> None:
    commands = dict(
        line.split(":", 1) for line in (BASE_DIR / "Procfile").read_text().splitlines() if line.strip()[:1].isalpha()
    )
    del commands["proxy"]  # HAProxy: not ours, not Python; its CPU shows in the benches, its memory in ps
    roles = {name: process_role(python_argv(command.strip())) for name, command in commands.items()}
    assert roles == {
        "web": "web",
        "worker": "worker",
        "beat": "beat",
        "market": "market",
        "persister": "persister",
        "engine": "engine",
    }


def test_the_process_sampler_sheds_when_host_memory_reaches_the_alert_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from apps.core.pressure import register_shedder, unregister_shedder
    from apps.monitoring import instrumentation

    shed: list[int] = []
    register_shedder("sampler-test", lambda: shed.append(1) or 1)
    try:
        sampler = ProcessSampler("test")
        monkeypatch.setattr(instrumentation.psutil, "virtual_memory", lambda: SimpleNamespace(percent=84.9))
        sampler.sample()
        assert shed == []
        monkeypatch.setattr(instrumentation.psutil, "virtual_memory", lambda: SimpleNamespace(percent=85.0))
        sampler.sample()
        assert shed == [1]
    finally:
        unregister_shedder("sampler-test")


def test_the_process_sampler_sets_memory_and_cpu_for_this_process() -> None:
    ProcessSampler("test").sample()
    assert sample("trading_process_resident_memory_bytes", role="test") > 10_000_000


# --- /metrics across processes ------------------------------------------------------------------------
CHILD = """
from apps.core.metrics import TICKS_GENERATED, WS_CONNECTIONS
from apps.core import metrics
from apps.monitoring.instrumentation import ProcessSampler
TICKS_GENERATED.inc(7)
WS_CONNECTIONS.inc(5)
ProcessSampler("child").sample()
"""


def test_metrics_shows_counters_of_other_processes_and_forgets_live_gauges_of_dead_ones(db: None) -> None:
    client = Client()
    before = scrape(client)
    subprocess.run([sys.executable, "-c", CHILD], cwd=BASE_DIR, env=service_env(), check=True, timeout=60)
    after = scrape(client)
    ticks = "trading_ticks_generated_total"
    assert scraped_value(after, ticks) == scraped_value(before, ticks) + 7
    # The child exited without saying so: its live gauges are dropped on scrape, its counters stay.
    assert scraped_value(after, "trading_ws_connections") == scraped_value(before, "trading_ws_connections")
    assert 'role="child"' not in after


def test_metrics_includes_django_prometheus_request_metrics(db: None) -> None:
    client = Client()
    client.get("/healthz")
    assert "django_http_requests_total_by_method_total" in scrape(client)


# --- who may read /metrics ------------------------------------------------------------------------------
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic czNjcmV0", "Bearer "])
@override_settings(METRICS_TOKEN="s3cret-scrape-token")
def test_metrics_refuses_a_scrape_without_the_metrics_token(db: None, authorization: str | None) -> None:
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = Client().get("/metrics", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"trading_" not in response.content


@override_settings(METRICS_TOKEN="s3cret-scrape-token")
def test_metrics_answers_a_scrape_with_the_metrics_token(db: None) -> None:
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert response.status_code == 200 and b"django_http_requests" in response.content


@override_settings(METRICS_TOKEN="", METRICS_OPEN_WITHOUT_TOKEN=False)
def test_metrics_without_a_configured_token_is_closed_outside_development(db: None) -> None:
    assert Client().get("/metrics").status_code == 401


# --- label cardinality ------------------------------------------------------------------------------------
def test_invented_http_methods_add_no_time_series(db: None, auth_header: dict[str, str]) -> None:
    client = Client()
    before = scrape(client)
    for method in ["ZZRANDOM42", "ZZRANDOM43"]:
        assert client.generic(method, "/api/v1/me", **auth_header).status_code == 405
        client.generic(method, "/healthz")
    after = scrape(client)
    assert "ZZRANDOM" not in after
    series = {line.split(" ")[0] for line in after.splitlines() if not line.startswith("#")}
    series_before = {line.split(" ")[0] for line in before.splitlines() if not line.startswith("#")}
    invented = {name for name in series - series_before if "method=" in name and 'method="other"' not in name}
    assert not invented
    assert 'method="other"' in after
