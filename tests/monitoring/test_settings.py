"""Monitoring settings fail loudly at start-up, naming the variable."""

import pytest

from tests.core.test_settings import load_settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ALERT_WEBHOOK_URL", "file:///etc/passwd"),
        ("ALERT_MEMORY_PERCENT", "-1"),
        ("ALERT_API_P95_MS", "fast"),
        ("MONGODB_REQUEST_TIMEOUT_MS", "0"),
        ("MONITORING_SAMPLE_SECONDS", "often"),
        ("EMAIL_URL", "carrier-pigeon"),
    ],
)
def test_a_bad_monitoring_variable_stops_start_up_naming_it(variable: str, value: str) -> None:
    result = load_settings(**{variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr
