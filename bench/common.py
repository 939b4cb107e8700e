"""Shared plumbing for benchmarks: Django on the throwaway services, tables, result sections.

A benchmark module defines `run(quick: bool) -> str` returning a markdown section
(a table plus one line on what it means). `python -m bench [NAME ...] [--quick]`
runs them under `make bench` and rewrites each one's section of docs/performance.md.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BASE_DIR = Path(__file__).resolve().parent.parent
LOG_DIR = BASE_DIR / "var" / "log"
BENCH_SECRET = "bench-only-secret-key-not-for-production"


def setup_django(*, migrate: bool = True) -> None:
    """Configure Django against the services `make bench` started; migrate the throwaway database."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trading.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", "--database", "market", verbosity=0)  # first: see apps/market/migrations/0003
        call_command("migrate", verbosity=0)


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 0.50), 2),
        "p95": round(percentile(ms, 0.95), 2),
        "p99": round(percentile(ms, 0.99), 2),
        "mean": round(statistics.fmean(ms), 2) if ms else float("nan"),
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table (also readable in a terminal)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def cpu_seconds(process: psutil.Process) -> float:
    """CPU time of a process and its children (the load generator reports its own too)."""
    times = process.cpu_times()
    total = times.user + times.system
    for child in process.children(recursive=True):
        try:
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
        except psutil.NoSuchProcess:
            pass
    return total


def machine() -> str:
    cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    memory = psutil.virtual_memory().total / 2**30
    return f"{cpu} cores, {memory:.0f} GiB, Python {sys.version.split()[0]}"


def raise_open_file_limit() -> None:
    """Thousands of sockets per process: the soft limit up to the hard one (inherited by the stack we start)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the full stack, as `make run` starts it ---------------------------------------------------
def procfile_commands(port: int) -> dict[str, list[str]]:
    """Every process of the Procfile, as `make run` starts them (so the bench measures what ships): through
    a shell that expands the variables (PORT is in the stack's environment), and the web server as many
    times as `make run` starts it (WEB_PROCESSES, one per core: web, web_1, ...), the proxy twice."""
    from trading.devstack import formation

    commands = {}
    for line in (BASE_DIR / "Procfile").read_text().splitlines():
        if ":" in line and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            argv = ["/bin/sh", "-c", f"exec {command.strip()}"]
            for number in range(formation().get(name.strip(), 1)):
                commands[name.strip() if number == 0 else f"{name.strip()}_{number}"] = argv
    return commands


@dataclass
class Stack:
    """The Procfile's processes on the throwaway services, DEBUG off; logs in var/log/bench-<name>-<process>.log."""

    name: str
    env: dict[str, str] = field(default_factory=dict)  # on top of the bench's own environment
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)

    def start(self, port: int) -> None:
        from django.conf import settings

        from trading.devstack import proxy_env, tool_path, wait_for_port

        env = {
            **os.environ,
            **proxy_env(port),
            "PATH": tool_path(Path(sys.executable).parent),
            "MONGODB_NAME": settings.DATABASES["default"]["NAME"],
            "REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX,
            "DJANGO_DEBUG": "0",
            # Production settings, plain HTTP on 127.0.0.1: as behind a TLS-terminating proxy.
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_SECRET_KEY": BENCH_SECRET,
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",  # a process killed by a step (kill -9) keeps what it logged
            "PORT": str(port),
            **self.env,
        }
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.commands, self.environment = procfile_commands(port), env
        for name in self.commands:
            self.spawn(name)
        wait_for_port(int(env["WEB_PORT"]), process=self.processes["web"], what="the web server", timeout=60)
        wait_for_port(port, process=self.processes["proxy"], what="the proxy", timeout=60)

    def spawn(self, name: str) -> subprocess.Popen[bytes]:
        """Start (or start again, as a supervisor would after a crash) one of the Procfile's processes."""
        with (LOG_DIR / f"bench-{self.name}-{name}.log").open("ab") as log:
            process = subprocess.Popen(self.commands[name], cwd=BASE_DIR, env=self.environment, stdout=log, stderr=log)
        self.processes[name] = process
        return process

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


class CpuMeter:
    """CPU seconds per role: our children (with their children), the database process, Redis' INFO, us."""

    def __init__(self, stack: Stack, extra: dict[str, psutil.Process] | None = None) -> None:
        self.roles: dict[str, list[psutil.Process]] = {}
        for name, process in stack.processes.items():
            parent = psutil.Process(process.pid)
            role = name.split("_")[0]  # web, web_1, ...: one role
            self.roles.setdefault(role, []).extend([parent, *parent.children(recursive=True)])
        for name, process in (extra or {}).items():
            self.roles[name] = [process, *process.children(recursive=True)]
        self.roles["load generator"] = [psutil.Process()]
        for uri in {os.environ.get("MONGODB_URI", ""), os.environ.get("MONGODB_TICKS_URI", "")}:
            database = _listener(_port_of(uri))  # the accounts' database and the market's, when it has its own
            if database is not None:
                self.roles.setdefault("database", []).append(database)

    def sample(self) -> dict[str, float]:
        seconds = {}
        for role, processes in self.roles.items():
            total = 0.0
            for process in processes:
                try:
                    times = process.cpu_times()
                    total += times.user + times.system
                except psutil.NoSuchProcess:
                    pass
            seconds[role] = total
        seconds["redis"] = _redis_cpu_seconds()
        return seconds


def _port_of(uri: str) -> int | None:
    from urllib.parse import urlsplit

    try:
        return urlsplit(uri).port
    except ValueError:
        return None


def _listener(port: int | None) -> psutil.Process | None:
    if port is None:
        return None
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid:
            return psutil.Process(connection.pid)
    return None


def listening_process(uri: str) -> psutil.Process | None:
    """The local process listening on the port of `uri` (a database), if any."""
    return _listener(_port_of(uri))


def _redis_cpu_seconds() -> float:
    from apps.core.redis import redis_client

    info = redis_client().info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def seed_symbols(count: int) -> list[str]:
    from apps.market.models import Symbol
    from apps.market.services import symbols_seed

    for _ in symbols_seed(count=count):
        pass
    return list(Symbol.objects.order_by("ticker").values_list("ticker", flat=True)[:count])


def wait_for_quotes(tickers: list[str], timeout: float = 60) -> None:
    from apps.market.quotes import latest_prices

    deadline = time.monotonic() + timeout
    while len(latest_prices(tickers[:20])) < 20:
        if time.monotonic() > deadline:
            raise RuntimeError("the simulator published no quotes")
        time.sleep(0.2)
