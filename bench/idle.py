"""The idle stack: CPU of every process `make run` starts, with the market ticking and no user connected.

Starts the stack exactly as `make run` does (`python -m trading.devstack run`,
its own PORT and REDIS_KEY_PREFIX, data under var/), waits for /healthz, lets
it settle, then reads the CPU time of every process in the stack's process
tree over SECONDS (psutil) at the default tick rate (MARKET_TICK_RATE, 500/s).
Reported per process and in total as % of one core; target: total <= 15 %.
The machine's Redis is shared with other runs and not part of the tree: it
is listed separately (its whole CPU, an upper bound of our share).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import psutil

from bench.common import BASE_DIR, progress, table

SECONDS = 60.0
SETTLE_SECONDS = 15.0
TARGET_PERCENT = 15.0
PORT = os.environ.get("IDLE_BENCH_PORT", "8012")
PREFIX = os.environ.get("IDLE_BENCH_PREFIX", "wt12")
missed: list[str] = []


def _label(process: psutil.Process) -> str:
    try:
        line = " ".join(process.cmdline())
    except psutil.Error:
        return "?"
    for needle, label in [
        ("mongodb-market", "market database (SecantusDB)"),
        ("secantusd", "trading database (SecantusDB)"),
        ("persist_ticks", "persister"),
        ("run_market", "simulator"),
        ("celery -A trading beat", "celery beat"),
        ("celery -A trading worker", "celery worker"),
        ("uvicorn", "web (uvicorn)"),
        ("supervisord", "supervisord"),
        ("trading.supervision", "supervisor event listener"),
        ("multiprocessing", "web workers (uvicorn)"),
        ("trading.devstack", "devstack"),
    ]:
        if needle in line:
            return label
    return line[:40] or process.name()


def _wait_healthy(stack: subprocess.Popen[bytes], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.poll() is not None:
            raise RuntimeError(f"the stack exited with {stack.returncode} before /healthz answered")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"/healthz did not answer within {timeout:.0f} s")


def _cpu(process: psutil.Process) -> float | None:
    try:
        times = process.cpu_times()
        return times.user + times.system
    except psutil.Error:
        return None


def _sample(root: psutil.Process, seconds: float) -> tuple[dict[str, list[float]], float]:
    """CPU seconds per label over `seconds`, for processes alive at both ends; plus the machine's Redis."""
    tree = [root, *root.children(recursive=True)]
    redis = [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("redis-server")]
    before = {p.pid: (p, _cpu(p)) for p in tree + redis}
    time.sleep(seconds)
    used: dict[str, list[float]] = {}
    redis_cpu = 0.0
    for _pid, (process, start) in before.items():
        end = _cpu(process)
        if start is None or end is None:
            continue
        if process in redis:
            redis_cpu += end - start
        else:
            used.setdefault(_label(process), []).append(end - start)
    return used, redis_cpu


def _stop(stack: subprocess.Popen[bytes], pids: list[psutil.Process]) -> None:
    try:
        os.killpg(stack.pid, signal.SIGINT)  # as Ctrl-C in `make run`'s terminal
        stack.wait(timeout=90)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        pass
    for process in pids:  # only what this run started
        with contextlib.suppress(psutil.Error):
            process.kill()


def run(quick: bool) -> tuple[str, list[str]]:
    missed.clear()
    seconds = 20.0 if quick else SECONDS
    env = {**os.environ, "PORT": PORT, "REDIS_KEY_PREFIX": PREFIX, "PYTHONUNBUFFERED": "1"}
    for inherited in ("MONGODB_URI", "MONGODB_TICKS_URI", "PROMETHEUS_MULTIPROC_DIR"):  # `make run` starts its own
        env.pop(inherited, None)
    (BASE_DIR / "var" / "log").mkdir(parents=True, exist_ok=True)
    log = (BASE_DIR / "var" / "log" / "idle-bench.log").open("ab")
    argv = [sys.executable, "-m", "trading.devstack", "run"]
    stack = subprocess.Popen(argv, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    root = psutil.Process(stack.pid)
    started: list[psutil.Process] = []
    try:
        progress(f"idle: starting the stack on port {PORT}")
        _wait_healthy(stack)
        progress(f"idle: healthy; settling {SETTLE_SECONDS:.0f} s, then sampling {seconds:.0f} s")
        time.sleep(SETTLE_SECONDS)
        started = root.children(recursive=True)
        used, redis_cpu = _sample(root, seconds)
    finally:
        _stop(stack, started)
        log.close()
    rows: list[list[Any]] = []
    total = 0.0
    for label, values in sorted(used.items(), key=lambda item: -sum(item[1])):
        percent = sum(values) / seconds * 100
        total += percent
        rows.append([label, len(values), f"{percent:.1f}"])
    rows.append(["**total (stack)**", sum(len(v) for v in used.values()), f"**{total:.1f}**"])
    rows.append(["machine's Redis (shared, not in the total)", "-", f"{redis_cpu / seconds * 100:.1f}"])
    if total > TARGET_PERCENT:
        missed.append(f"idle stack at {total:.1f} % of one core (target {TARGET_PERCENT:.0f} %)")
    verdict = "meets" if total <= TARGET_PERCENT else "misses"
    section = "\n".join(
        [
            f"## Idle stack (`make run`, no users, default tick rate, {seconds:.0f} s)",
            "",
            table(["process", "count", "% of one core"], rows),
            "",
            f"The whole stack used {total:.1f} % of one core with the market ticking and nobody connected; "
            f"it {verdict} the target of {TARGET_PERCENT:.0f} %. Before this work: 58 % (issue 12).",
        ]
    )
    return section, list(missed)
