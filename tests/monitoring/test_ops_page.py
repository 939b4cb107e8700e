"""The operator page: staff only, every key figure, trends, open alerts, index warnings."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.template.loader import render_to_string
from django.test import Client
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.core.redis import redis_client
from apps.monitoring.figures import FIGURE_NAMES, KEY_FIGURES, format_figure
from apps.monitoring.models import Alert, AlertRule, MetricSample
from apps.monitoring.recorder import latest_snapshot_key
from apps.monitoring.selectors import CHARTS, chart_polylines


@pytest.fixture
def staff_client(db: None) -> Client:
    get_user_model().objects.create_user("ops", "ops@example.com", "ops-pass", is_staff=True)
    client = Client()
    assert client.login(username="ops", password="ops-pass")
    return client


def test_anonymous_visitors_are_sent_to_the_login_page(db: None) -> None:
    for url in ("/ops/", "/ops/data", "/ops/charts"):
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")


def test_logged_in_traders_who_are_not_staff_are_refused(db: None) -> None:
    get_user_model().objects.create_user("bob", "bob@example.com", "bob-pass")
    client = Client()
    client.login(username="bob", password="bob-pass")
    for url in ("/ops/", "/ops/data", "/ops/charts"):
        assert client.get(url).status_code == 403


def test_the_page_renders_before_any_sample_exists(staff_client: Client) -> None:
    response = staff_client.get("/ops/")
    assert response.status_code == 200
    assert b"No sample recorded yet" in response.content


def test_staff_see_every_key_figure_alerts_trends_and_index_warnings(staff_client: Client) -> None:
    now = timezone.now()
    figures = {name: float(i + 1) for i, name in enumerate(FIGURE_NAMES)}
    for minutes in range(0, 50, 5):
        MetricSample.objects.create(recorded_at=now - timedelta(minutes=minutes), figures=figures)
    MetricSample.objects.create(
        recorded_at=now - timedelta(hours=3), figures=figures, resolution=MetricSample.Resolution.ROLLUP
    )
    rule = AlertRule.objects.create(key="memory_percent", figure="memory_percent", threshold=85)
    Alert.objects.create(rule=rule, opened_at=now, last_value=93.5, message="Host memory 93.5 > 85")
    response = staff_client.get("/ops/")
    page = response.content.decode()
    assert response.status_code == 200
    for figure in KEY_FIGURES:
        assert figure.label in page
        assert format_figure(figure.name, figures[figure.name]) in page
    assert "Host memory 93.5 &gt; 85" in page
    assert page.count("<polyline") == 2 * sum(len(names) for _, names in CHARTS)
    assert "no data in the last hour" not in page and "no data in the last day" not in page
    data = staff_client.get("/ops/data").json()
    assert [f["name"] for f in data["figures"]] == list(FIGURE_NAMES)
    assert data["alerts"][0]["rule"] == "memory_percent"
    assert data["source"] == "database" and data["stale"] is False


def test_missing_indexes_are_warned_about_on_the_page(staff_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.monitoring import selectors

    monkeypatch.setattr(selectors, "_index_warnings", (0.0, []))
    monkeypatch.setattr(selectors, "missing_indexes", lambda: [_FakeIndex()])
    assert "Missing index: market_pricetick {symbol: 1}" in staff_client.get("/ops/").content.decode()


class _FakeIndex:
    def describe(self) -> str:
        return "market_pricetick {symbol: 1}"


figure_value = st.one_of(st.none(), st.floats(min_value=0, max_value=1e9, allow_nan=False))


@settings(max_examples=100, deadline=None)
@given(
    figures=st.fixed_dictionaries({name: figure_value for name in FIGURE_NAMES}),
    points=st.lists(st.tuples(st.floats(min_value=0, max_value=3600), figure_value), max_size=30),
    degraded=st.lists(st.sampled_from(["redis", "celery", "database", "prometheus"]), unique=True),
)
def test_every_dashboard_render_shows_all_key_figures_and_trends(
    figures: dict[str, float | None], points: list[tuple[float, float | None]], degraded: list[str]
) -> None:
    """Feature: trading-performance-optimization, Property 33: For any performance dashboard request, all key metrics
    and trends should be displayed"""
    snapshot = {
        "recorded_at": "2026-11-25T12:00:00+00:00",
        "age_seconds": 1.0,
        "stale": False,
        "source": "redis",
        "degraded": degraded,
        "figures": [
            {"name": n, "label": f.label, "value": figures[n], "display": format_figure(n, figures[n])}
            for n, f in zip(FIGURE_NAMES, KEY_FIGURES, strict=True)
        ],
        "alerts": [],
        "index_warnings": [],
    }
    series = {name: sorted(points, key=lambda point: point[0]) for name in FIGURE_NAMES}
    charts = [
        {
            "title": title,
            "figures": list(names),
            "windows": [{"window": w, **chart_polylines(series, names, start=0, end=3600)} for w in ("hour", "day")],
        }
        for title, names in CHARTS
    ]
    page = render_to_string("monitoring/ops.html", {"snapshot": snapshot, "charts": charts})
    for figure in KEY_FIGURES:
        assert f'data-figure="{figure.name}">{format_figure(figure.name, figures[figure.name])}<' in page
    for title, _names in CHARTS:
        assert f'aria-label="{title}, last hour"' in page and f'aria-label="{title}, last day"' in page
    charted = {name for _, names in CHARTS for name in names}
    assert {"api_p50_ms", "api_p95_ms", "api_p99_ms", "db_p95_ms", "ws_clients", "ws_frames_per_second"} <= charted
    assert {"tick_rate", "persister_backlog", "cache_hit_ratio", "celery_queue_length", "memory_percent"} <= charted
    assert {"cpu_percent", "open_alerts"} <= charted
    if degraded:
        assert ", ".join(degraded) in page


def test_live_figures_come_from_redis_when_the_recorder_published_them(staff_client: Client) -> None:
    snapshot = {"recorded_at": timezone.now().isoformat(), "figures": {"memory_percent": 42.0}, "degraded": []}
    redis_client().set(latest_snapshot_key(), json.dumps(snapshot))
    data = staff_client.get("/ops/data").json()
    assert data["source"] == "redis"
    assert {f["name"]: f["value"] for f in data["figures"]}["memory_percent"] == 42.0
