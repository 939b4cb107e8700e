"""The runtime set (requirements.txt) runs the platform without any development package.

A virtualenv holding requirements.txt alone (built once per lock under var/, the way a production
image would: `pip install --require-hashes -r requirements.txt`) must pass Django's checks with the
production settings and serve /healthz from its own uvicorn and Celery worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from trading.devstack import free_port

BASE_DIR = Path(__file__).resolve().parent.parent
RUNTIME_VENV = BASE_DIR / "var" / "runtime-venv"
# Importable in the development set only; none may leak into the runtime set.
DEVELOPMENT_MODULES = [
    "pytest",
    "hypothesis",
    "mypy",
    "ruff",
    "playwright",
    "factory",
    "faker",
    "time_machine",
    "bandit",
    "importlinter",
    "aiohttp",
    "piptools",
]

pytestmark = pytest.mark.slow


def _runtime_python() -> Path:
    """A virtualenv with requirements.txt only, rebuilt whenever the lock changes."""
    lock = (BASE_DIR / "requirements.txt").read_bytes()
    stamp = RUNTIME_VENV / ".requirements-sha256"
    python = RUNTIME_VENV / "bin" / "python"
    digest = hashlib.sha256(lock).hexdigest()
    if not (stamp.exists() and stamp.read_text() == digest and python.exists()):
        shutil.rmtree(RUNTIME_VENV, ignore_errors=True)
        subprocess.run([sys._base_executable, "-m", "venv", str(RUNTIME_VENV)], check=True)
        pip = [str(python), "-m", "pip", "--quiet", "--disable-pip-version-check", "install", "--require-hashes"]
        subprocess.run([*pip, "-r", str(BASE_DIR / "requirements.txt")], check=True, timeout=600)
        stamp.write_text(digest)
    return python


def _production_env() -> dict[str, str]:
    """The test session's services with the documented production variables."""
    env = {key: value for key, value in os.environ.items() if key not in {"TESTING", "DJANGO_SETTINGS_MODULE"}}
    env.update(
        {
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture(scope="module")
def runtime_python() -> Path:
    return _runtime_python()


def test_the_runtime_set_holds_no_development_package(runtime_python: Path) -> None:
    probe = "import importlib.util as u, json, sys; print(json.dumps([m for m in sys.argv[1:] if u.find_spec(m)]))"
    found = subprocess.run(
        [str(runtime_python), "-c", probe, *DEVELOPMENT_MODULES], capture_output=True, text=True, check=True
    )
    assert json.loads(found.stdout) == []


def test_the_runtime_set_passes_the_deployment_check(runtime_python: Path) -> None:
    result = subprocess.run(
        [str(runtime_python), "manage.py", "check", "--deploy"],
        cwd=BASE_DIR,
        env=_production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
def runtime_stack(runtime_python: Path) -> Iterator[int]:
    """uvicorn and a Celery worker from the runtime virtualenv, with production settings."""
    env, port = _production_env(), free_port()
    bin_dir = runtime_python.parent
    worker = subprocess.Popen(
        [
            str(bin_dir / "celery"),
            "-A",
            "trading",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"runtime-{os.getpid()}@%h",
        ],
        cwd=BASE_DIR,
        env=env,
    )
    server = subprocess.Popen(
        [
            str(bin_dir / "uvicorn"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--log-level",
            "warning",
            "trading.asgi:application",
        ],
        cwd=BASE_DIR,
        env=env,
    )
    try:
        yield port
    finally:
        for process in (server, worker):
            process.terminate()
        for process in (server, worker):
            process.wait(timeout=20)


def _healthz(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)
    except OSError:
        return 0, {}


def test_the_runtime_set_serves_healthz(runtime_stack: int) -> None:
    deadline = time.monotonic() + 90
    status, body = _healthz(runtime_stack)
    while status != 200 and time.monotonic() < deadline:  # the server and the worker are starting
        time.sleep(0.5)
        status, body = _healthz(runtime_stack)
    assert status == 200, body
