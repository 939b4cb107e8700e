import os
import subprocess
import sys

import pytest

from tests.conftest import BASE_DIR

PRODUCTION_KEY = "a-production-key-of-sufficient-length-and-variety-0123456789-xyz"


def load_settings(*unset: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    code = "import django; django.setup(); from django.conf import settings; print('loaded', settings.DEBUG)"
    env = {name: value for name, value in os.environ.items() if name not in unset} | overrides
    return subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True)


def test_settings_load_from_the_environment() -> None:
    assert load_settings().stdout.strip() == "loaded True"  # the test plugin sets development mode


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "eighty"),
        ("REDIS_POOL_MAX", "50"),
        ("REDIS_URL", "http://example.invalid"),
        ("TRADER_STARTING_CASH", "-5"),
        ("LOG_FORMAT", "xml"),
        ("DJANGO_DEBUG", "maybe"),
        ("FORWARDED_ALLOW_IPS", "127.0.0.1,nginx-host"),
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


def test_without_django_debug_the_settings_are_production_and_need_a_secret_key() -> None:
    result = load_settings("DJANGO_DEBUG", "DJANGO_SECRET_KEY")
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr
    assert load_settings("DJANGO_DEBUG", DJANGO_SECRET_KEY=PRODUCTION_KEY).stdout.strip() == "loaded False"


@pytest.mark.parametrize("variable", ["DJANGO_SECRET_KEY", "DJANGO_SECRET_KEY_FALLBACKS"])
def test_production_refuses_the_committed_development_key(variable: str) -> None:
    development_key = "development-only-key-never-used-in-production"
    keys = {"DJANGO_SECRET_KEY": PRODUCTION_KEY, variable: development_key}
    result = load_settings(DJANGO_DEBUG="false", **keys)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "development key is refused" in result.stderr


def test_devstack_starts_its_commands_in_development_mode() -> None:
    """`make run` and `make bench` set DJANGO_DEBUG=true themselves now that the settings default to production."""
    code = "import django; django.setup(); from django.conf import settings; print('debug', settings.DEBUG)"
    env = {name: value for name, value in os.environ.items() if name not in {"DJANGO_DEBUG", "DJANGO_SECRET_KEY"}}
    result = subprocess.run(
        [sys.executable, "-m", "trading.devstack", "exec", "--", sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "debug True" in result.stdout, result.stderr
