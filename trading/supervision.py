"""Supervision of `make run` by supervisord (docs/decisions/0006-process-supervision.md).

One declared process list, the Procfile, becomes supervisord programs: each is
restarted when it dies (at once after a crash of a running process; with a
delay growing by one second per failed start when it cannot stay up), and
each program runs in its own process group, so a stop reaches its children
(uvicorn's workers, Celery's pool) and Ctrl-C on supervisord stops everything
in reverse start order. Services (embedded MongoDB and Redis) are programs too,
added while supervisord runs, so a killed database comes back as well.

`python -m trading.supervision listen` is the supervisord event listener: it
logs every exit and restart and counts restarts in
`trading_process_restarts_total{process}` (prometheus_client multiprocess
files, so `/metrics` shows it). This module must not import Django.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Seconds a process must stay up to count as started; failed starts are retried after 1, 2, 3 ... s.
START_SECONDS = 1
# Effectively "never give up": a crash loop keeps retrying, ever more slowly, and the log says so.
START_RETRIES = 1000
STOP_WAIT_SECONDS = 10
SERVICE_PRIORITY = 10  # started first, stopped last
APP_PRIORITY = 100


@dataclass(frozen=True)
class Program:
    """One supervised process: a name, a shell command line, where its output goes."""

    name: str
    command: str
    log: Path
    priority: int = APP_PRIORITY
    stop_signal: str = "TERM"
    processes: int = 1  # more than one: supervisord's numprocs, named <name>_0, <name>_1 ...


def procfile_programs(procfile: Path, *, log_dir: Path, formation: dict[str, int] | None = None) -> list[Program]:
    """The Procfile's processes (`name: command`, `$VAR` expanded by a shell), in file order; `formation`
    says how many processes of a name to run (default one)."""
    programs: list[Program] = []
    for number, line in enumerate(procfile.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, separator, command = line.partition(":")
        if not separator or not name.strip().isidentifier() or not command.strip():
            raise ValueError(f"{procfile}:{number}: expected 'name: command', got {line!r}")
        name = name.strip()
        processes = (formation or {}).get(name, 1)
        if processes < 1:
            raise ValueError(f"{name}: at least one process, got {processes}")
        programs.append(
            Program(name, command.strip(), log_dir / f"{name}.log", APP_PRIORITY + len(programs), processes=processes)
        )
    return programs


def _escape(value: str) -> str:
    return value.replace("%", "%%")  # supervisord expands %(name)s in its values


def program_section(program: Program, *, directory: Path) -> str:
    # `sh -c 'exec ...'`: the shell expands $PORT and friends, then becomes the process (signals reach it).
    command = shlex.join(["/bin/sh", "-c", f"exec {program.command}"])
    log = _escape(str(program.log))
    several = ""
    if program.processes > 1:  # each its own name and log: web_0, web_1 (var/log/web_0.log ...)
        several = f"numprocs={program.processes}\nprocess_name=%(program_name)s_%(process_num)s\n"
        log = _escape(str(program.log.with_name(program.log.stem))) + "_%(process_num)s" + program.log.suffix
    return f"""[program:{program.name}]
{several}command={_escape(command)}
directory={_escape(str(directory))}
priority={program.priority}
autostart=true
autorestart=true
startsecs={START_SECONDS}
startretries={START_RETRIES}
stopsignal={program.stop_signal}
stopwaitsecs={STOP_WAIT_SECONDS}
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={log}
stdout_logfile_maxbytes=20MB
stdout_logfile_backups=2
"""


def supervisord_config(*, run_dir: Path, include_dir: Path, python: str) -> str:
    """supervisord's own settings, its control socket, the restart listener, and an include of the programs."""
    listener = shlex.join([python, "-m", "trading.supervision", "listen"])
    return f"""[supervisord]
nodaemon=true
logfile={_escape(str(run_dir / "supervisord.log"))}
logfile_maxbytes=10MB
pidfile={_escape(str(run_dir / "supervisord.pid"))}
childlogdir={_escape(str(run_dir))}
loglevel=info

[unix_http_server]
file={_escape(str(run_dir / "supervisor.sock"))}
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{_escape(str(run_dir / "supervisor.sock"))}

[eventlistener:restarts]
command={_escape(listener)}
events=PROCESS_STATE
priority=1
autorestart=true
stdout_logfile=NONE
stderr_logfile={_escape(str(run_dir / "restarts.log"))}

[include]
files={_escape(str(include_dir))}/*.conf
"""


def environment_line(env: dict[str, str]) -> str:
    quoted = [key for key, value in env.items() if '"' in value]
    if quoted:
        raise ValueError(f"environment values for supervisord cannot contain double quotes: {', '.join(quoted)}")
    return "environment=" + ",".join(f'{key}="{_escape(value)}"' for key, value in sorted(env.items())) + "\n"


class Supervisor:
    """A supervisord in the foreground for one `make run`; programs are added while it runs."""

    def __init__(self, run_dir: Path, *, python: str = sys.executable) -> None:
        self.run_dir = run_dir
        self.include_dir = run_dir / "programs"
        self.config = run_dir / "supervisord.conf"
        self.python = python
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        self.include_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.include_dir.glob("*.conf"):
            stale.unlink()
        config = supervisord_config(run_dir=self.run_dir, include_dir=self.include_dir, python=self.python)
        self.config.write_text(config)
        supervisord = str(Path(self.python).parent / "supervisord")
        self.process = subprocess.Popen([supervisord, "-c", str(self.config)], env=env)
        deadline = time.monotonic() + 20
        while self.control("status", quiet=True) not in (0, 3):  # 3: some program is not running (none yet)
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"[stack] supervisord did not start (see {self.run_dir / 'supervisord.log'})")
            time.sleep(0.1)

    def control(self, *args: str, quiet: bool = False) -> int:
        supervisorctl = str(Path(self.python).parent / "supervisorctl")
        output = subprocess.DEVNULL if quiet else None
        command = [supervisorctl, "-c", str(self.config), *args]
        return subprocess.run(command, stdout=output, stderr=output, check=False).returncode

    def add(self, programs: list[Program], *, directory: Path, env: dict[str, str] | None = None) -> None:
        """Add and start `programs` (a restart of supervisord is never needed)."""
        for program in programs:
            section = program_section(program, directory=directory)
            if env:
                section += environment_line(env)
            (self.include_dir / f"{program.name}.conf").write_text(section)
        self.control("update", quiet=True)

    def wait(self) -> int:
        assert self.process is not None
        try:
            return self.process.wait()
        except KeyboardInterrupt:  # Ctrl-C reached supervisord too (it is stopping); SIGTERM to us did not
            self.stop()
            return 130

    def stop(self) -> None:
        """Stop every program (reverse priority) and supervisord itself; wait until all are gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait()
        except KeyboardInterrupt:
            self.process.wait()
        self.process = None


STOP_WITH_PARENT = "STOP_WITH_PARENT"  # set in supervised programs' environment
PR_SET_PDEATHSIG = 1


def stop_with_parent() -> None:
    """When STOP_WITH_PARENT is set, ask Linux to SIGTERM this process when its parent dies.

    Why: `uvicorn --workers 2` restarts a worker that dies, but when its master is killed (-9) the
    workers live on as orphans holding the listening socket, and every restart of the master then
    fails with "Address already in use". With this a worker ends with its master, and the restarted
    master binds again. (systemd does the same with KillMode=control-group.)"""
    if os.environ.get(STOP_WITH_PARENT) != "1" or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


# --- the event listener -------------------------------------------------------------------------
RESTART_FROM_STATES = {"EXITED", "BACKOFF"}  # STARTING after these is a restart, after STOPPED a first start


def parse_event(header_line: str, payload: str) -> tuple[str, str, dict[str, str]]:
    """(event name, process name, payload fields) of one supervisord event."""
    header = dict(token.split(":", 1) for token in header_line.split())
    fields = dict(token.split(":", 1) for token in payload.split("\n", 1)[0].split())
    return header["eventname"], fields.get("processname", ""), fields


def is_restart(event: str, fields: dict[str, str]) -> bool:
    return event == "PROCESS_STATE_STARTING" and fields.get("from_state") in RESTART_FROM_STATES


def listen() -> None:  # pragma: no cover - exercised by tests/test_supervision.py through a real supervisord
    from prometheus_client import Counter  # after PROMETHEUS_MULTIPROC_DIR is in the environment

    restarts = Counter("trading_process_restarts", "Processes restarted by the supervisor", ["process"])
    stdin, stdout, log = sys.stdin, sys.stdout, sys.stderr
    while True:
        stdout.write("READY\n")
        stdout.flush()
        header_line = stdin.readline()
        header = dict(token.split(":", 1) for token in header_line.split())
        payload = stdin.read(int(header["len"]))
        event, process, fields = parse_event(header_line, payload)
        if event == "PROCESS_STATE_EXITED" and fields.get("expected") == "0":
            log.write(f"[supervision] {process} died (pid {fields.get('pid')}); restarting it\n")
        elif event == "PROCESS_STATE_FATAL":
            log.write(f"[supervision] {process} could not be started; giving up\n")
        elif is_restart(event, fields):
            restarts.labels(process=process).inc()
            log.write(f"[supervision] {process} restarted (attempt {fields.get('tries', '?')})\n")
        log.flush()
        stdout.write("RESULT 2\nOK")
        stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:] != ["listen"]:
        sys.exit("usage: python -m trading.supervision listen")
    listen()
