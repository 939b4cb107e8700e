"""Run benchmarks and rewrite their sections of docs/performance.md.

python -m bench                 # every benchmark
python -m bench history cache   # only these
python -m bench --quick         # smaller, faster runs (smoke check)
python -m bench --check         # exit 1 when any benchmark misses one of its targets
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import time
from datetime import UTC, datetime

from bench.common import BASE_DIR, machine, progress

BENCHMARKS = [
    "history",
    "ingest",
    "idle",
    "cache",
    "orders",
    "journal",
    "ws_fanout",
    "dashboard_cpu",
    "monitoring",
    "api_load",
    "faults",
    "matching",
]
REPORT = BASE_DIR / "docs" / "performance.md"
HEADER = """# Performance

Measured by `make bench` on the development machine; every figure is compared with
a baseline measured in the same run. Each section is rewritten when its benchmark runs.
"""


def write_section(name: str, body: str) -> None:
    text = REPORT.read_text() if REPORT.exists() else HEADER
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = f"<!-- bench:{name} -->\n{body.strip()}\n\n_Run {stamp} on {machine()}._\n<!-- /bench:{name} -->"
    pattern = re.compile(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text.rstrip()}\n\n{block}\n"
    REPORT.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 when a benchmark misses one of its targets")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    missed: list[str] = []
    for name in args.names or BENCHMARKS:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            progress(f"{name}: not written yet, skipped")
            continue
        progress(f"{name}: running{' (quick)' if args.quick else ''}")
        started = time.monotonic()
        # run() returns its section, or (section, the targets it missed) when it has targets
        result = module.run(quick=args.quick)
        body, misses = (result, []) if isinstance(result, str) else result
        missed += [f"{name}: {miss}" for miss in misses]
        print(f"\n{body}\n", flush=True)
        write_section(name, body)
        progress(f"{name}: done in {time.monotonic() - started:.0f} s")
    for miss in missed:
        progress(f"MISSED {miss}")
    if args.check and missed:
        sys.exit(1)


if __name__ == "__main__":
    main()
