"""The runtime set (requirements.txt) runs the platform without any development package.

A virtualenv holding requirements.txt alone (the way a production image would build it: `pip install
--require-hashes -r requirements.txt`) must pass Django's checks with the production settings and serve
/healthz from its own uvicorn and Celery worker. It is built once per lock and interpreter and shared by
every clone and worktree of the machine (`~/.cache/paper-trading/runtime-venvs/`, under a file lock): the
build is most of this module's time, and the same lock always builds the same set.
"""

from __future__ import annotations

import fcntl
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
RUNTIME_VENVS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "paper-trading" / "runtime-venvs"
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
    """A virtualenv with requirements.txt only, for this lock and this interpreter."""
    key = hashlib.sha256((BASE_DIR / "requirements.txt").read_bytes() + sys.version.encode()).hexdigest()[:16]
    venv = RUNTIME_VENVS / key
    python = venv / "bin" / "python"
    RUNTIME_VENVS.mkdir(parents=True, exist_ok=True)
    with (RUNTIME_VENVS / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a session building the same set meanwhile finishes first
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
            # the development set's pip installs into it (`pip --python`): no pip of its own to bootstrap
            pip = [sys.executable, "-m", "pip", "--python", str(python), "--quiet", "--disable-pip-version-check"]
            pip += ["install", "--require-hashes", "-r", str(BASE_DIR / "requirements.txt")]
            subprocess.run(pip, check=True, timeout=600)
            (venv / ".complete").touch()
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
