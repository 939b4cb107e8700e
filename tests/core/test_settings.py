import os
import subprocess
import sys

import pytest

from tests.conftest import BASE_DIR


def load_settings(**overrides: str) -> subprocess.CompletedProcess[str]:
    code = "import django; django.setup(); print('loaded')"
    env = {**os.environ, **overrides}
    return subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True)


def test_settings_load_from_the_environment() -> None:
    assert load_settings().stdout.strip() == "loaded"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "eighty"),
        ("REDIS_POOL_MAX", "50"),
        ("REDIS_URL", "http://example.invalid"),
        ("TRADER_STARTING_CASH", "-5"),
        ("LOG_FORMAT", "xml"),
        ("DJANGO_DEBUG", "maybe"),
    ],
)
def test_a_bad_variable_fails_loudly_at_start_up_naming_it(variable: str, value: str) -> None:
    result = load_settings(**{variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr


def test_production_requires_a_secret_key() -> None:
    result = load_settings(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr
