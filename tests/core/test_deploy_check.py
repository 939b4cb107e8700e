"""`manage.py check --deploy` with the production variables docs/operations.md documents."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import BASE_DIR
from trading.devstack import free_port, wait_for_port

MARKER = "<!-- production-environment: tests/core/test_deploy_check.py runs check --deploy with it -->"


def documented_production_environment() -> dict[str, str]:
    """The KEY=value lines of the fenced block after MARKER; `<...>` placeholders become fresh secrets."""
    text = (BASE_DIR / "docs" / "operations.md").read_text()
    block = text.split(MARKER, 1)[1].split("```", 2)[1]
    variables: dict[str, str] = {}
    for line in block.splitlines():
        match = re.match(r"([A-Z_]+)=(\S*)", line.strip())
        if match:
            name, value = match.groups()
            variables[name] = secrets.token_urlsafe(50) if value.startswith("<") else value
    return variables


@pytest.fixture
def production_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis configured as the docs say: a password and a bounded LRU memory."""
    password, port = secrets.token_urlsafe(16), free_port()
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    argv += ["--requirepass", password, "--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru"]
    argv += ["--dir", str(tmp_path_factory.mktemp("redis"))]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process=process, what="redis-server")
        url = f"redis://:{password}@127.0.0.1:{port}/0"
        assert redis.Redis.from_url(url).ping()
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def run_check(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "METRICS_", "FORWARDED_"))}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=inherited | {"TESTING": "0"} | environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_documented_production_variables(production_redis: str) -> None:
    environment = documented_production_environment()
    assert environment["DJANGO_DEBUG"] == "false"
    result = run_check(environment | {"REDIS_URL": production_redis})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_defaults_are_secure_without_any_https_variable(production_redis: str) -> None:
    """Only the required variables: HSTS, SSL redirect and secure cookies come from DJANGO_DEBUG=false alone."""
    required = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_ALLOWED_HOSTS": "trading.example.com"}
    result = run_check({"DJANGO_DEBUG": "false", "REDIS_URL": production_redis} | required)
    warnings = set(re.findall(r"\(security\.(W\d+)\)", result.stdout + result.stderr))
    assert warnings <= {"W021"}, result.stdout + result.stderr  # HSTS preload is an explicit opt-in
