"""Shared plumbing for benchmarks: Django on the throwaway services, tables, result sections.

A benchmark module defines `run(quick: bool) -> str` returning a markdown section
(a table plus one line on what it means). `python -m bench [NAME ...] [--quick]`
runs them under `make bench` and rewrites each one's section of docs/performance.md.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import psutil

BASE_DIR = Path(__file__).resolve().parent.parent


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
