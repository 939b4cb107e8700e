"""`make run`'s supervision: the Procfile as supervisord programs, restarts counted, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from prometheus_client import CollectorRegistry, multiprocess

from tests.wait import wait_until
from trading.supervision import Program, Supervisor, is_restart, parse_event, procfile_programs, program_section


def test_each_procfile_line_becomes_a_program_in_file_order(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text("# comment\nweb: uvicorn --port $PORT app\n\nworker: celery worker --hostname w@%h\n")
    programs = procfile_programs(procfile, log_dir=tmp_path)
    assert [(p.name, p.command) for p in programs] == [
        ("web", "uvicorn --port $PORT app"),
        ("worker", "celery worker --hostname w@%h"),
    ]
    assert programs[0].priority < programs[1].priority  # started in order, stopped in reverse


def test_a_procfile_line_without_a_name_is_refused_naming_the_line(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text("web: run\nnot a process line\n")
    with pytest.raises(ValueError, match="Procfile:2"):
        procfile_programs(procfile, log_dir=tmp_path)


def test_a_program_restarts_forever_stops_as_a_group_and_keeps_percent_signs_literal(tmp_path: Path) -> None:
    section = program_section(Program("worker", "celery --hostname w@%h", tmp_path / "w.log"), directory=tmp_path)
    assert "autorestart=true" in section and "stopasgroup=true" in section and "killasgroup=true" in section
    assert "w@%%h" in section  # supervisord would expand %h itself


def test_only_a_start_after_an_exit_counts_as_a_restart() -> None:
    header = "ver:3.0 server:supervisor serial:1 pool:restarts poolserial:1 eventname:PROCESS_STATE_STARTING len:60"
    event, process, fields = parse_event(header, "processname:market groupname:market from_state:EXITED tries:0")
    assert (event, process) == ("PROCESS_STATE_STARTING", "market") and is_restart(event, fields)
    assert not is_restart(event, {**fields, "from_state": "STOPPED"})  # the first start


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[Supervisor, Path]]:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    supervisor = Supervisor(tmp_path / "supervisor")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    supervisor.start(env)
    try:
        yield supervisor, metrics_dir
    finally:
        supervisor.stop()


def supervised_pid(supervisor: Supervisor, name: str) -> int:
    ctl = [str(Path(sys.executable).parent / "supervisorctl"), "-c", str(supervisor.config), "pid", name]
    output = subprocess.run(ctl, capture_output=True, text=True, check=False).stdout.strip()
    return int(output) if output.isdigit() else 0


def restarts_counted(metrics_dir: Path, process: str) -> float:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_dir))
    return registry.get_sample_value("trading_process_restarts_total", {"process": process}) or 0.0


def test_a_killed_process_is_restarted_counted_and_one_stop_leaves_nothing_behind(
    supervised: tuple[Supervisor, Path], tmp_path: Path
) -> None:
    supervisor, metrics_dir = supervised
    # A process with a child of its own, as uvicorn and Celery have: stopping must reach the child too.
    command = f'{sys.executable} -c \'import subprocess, time; subprocess.Popen(["sleep", "300"]); time.sleep(300)\''
    supervisor.add([Program("sleeper", command, tmp_path / "sleeper.log")], directory=tmp_path)
    wait_until(lambda: supervised_pid(supervisor, "sleeper") > 0)
    first = supervised_pid(supervisor, "sleeper")
    wait_until(lambda: len(psutil.Process(first).children()) == 1)
    orphan = psutil.Process(first).children()[0]  # kill -9 leaves a child behind: not ours to test here
    os.kill(first, signal.SIGKILL)
    orphan.kill()
    wait_until(lambda: supervised_pid(supervisor, "sleeper") not in (0, first))
    wait_until(lambda: restarts_counted(metrics_dir, "sleeper") == 1.0)
    assert "sleeper restarted" in (supervisor.run_dir / "restarts.log").read_text()
    second = psutil.Process(supervised_pid(supervisor, "sleeper"))
    wait_until(lambda: len(second.children()) == 1)
    family = [second, *second.children()]
    supervisor.stop()
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_a_program_of_several_processes_names_each_and_gives_each_its_own_log(tmp_path: Path) -> None:
    program = Program("web", "serve", tmp_path / "web.log", processes=2)
    section = program_section(program, directory=tmp_path)
    assert "numprocs=2" in section and "process_name=%(program_name)s_%(process_num)s" in section
    assert f"stdout_logfile={tmp_path}/web_%(process_num)s.log" in section


def answered_by(port: int) -> int:
    """The pid of the process that answered one new connection (tests/trading/asgi_pid.py)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return int(response.read())


def listening_pids(port: int) -> set[int]:
    return {
        c.pid
        for c in psutil.net_connections("tcp")
        if c.laddr and c.laddr.port == port and c.status == "LISTEN" and c.pid
    }


def test_web_processes_share_one_port_and_a_killed_one_is_replaced_while_the_other_serves(
    supervised: tuple[Supervisor, Path], tmp_path: Path
) -> None:
    from trading.devstack import free_port

    supervisor, _ = supervised
    port = free_port()
    command = (
        f"{sys.executable} -m trading.serve --host 127.0.0.1 --port {port} --lifespan off tests.trading.asgi_pid:app"
    )
    supervisor.add([Program("web", command, tmp_path / "web.log", processes=2)], directory=Path.cwd())
    wait_until(lambda: len(listening_pids(port)) == 2)
    first, second = supervised_pid(supervisor, "web:web_0"), supervised_pid(supervisor, "web:web_1")
    assert listening_pids(port) == {first, second}
    victim = psutil.Process(first)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: not victim.is_running() or victim.status() == psutil.STATUS_ZOMBIE)  # its socket is gone
    answers = [answered_by(port) for _ in range(20)]  # while web_0 is restarted: every connection is served
    assert first not in answers
    wait_until(lambda: supervised_pid(supervisor, "web:web_0") not in (0, first))
    replacement = supervised_pid(supervisor, "web:web_0")
    wait_until(lambda: listening_pids(port) == {replacement, second})
    wait_until(lambda: {answered_by(port) for _ in range(10)} == {replacement, second})  # the kernel uses both
