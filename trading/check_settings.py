"""Lint step (`make lint`): production settings refuse to start with the committed development key.

Each case imports trading.settings in a fresh interpreter with DJANGO_DEBUG off and
must end in ImproperlyConfigured naming DJANGO_SECRET_KEY; a case that starts is a failure.
"""

import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DEVELOPMENT_KEY = "development-only-key-never-used-in-production"
STRONG_KEY = "lint-only-" + "k" * 20 + "0123456789abcdefghij"
CASES = {
    "no DJANGO_SECRET_KEY": {},
    "the development key": {"DJANGO_SECRET_KEY": DEVELOPMENT_KEY},
    "the development key as a fallback": {
        "DJANGO_SECRET_KEY": STRONG_KEY,
        "DJANGO_SECRET_KEY_FALLBACKS": DEVELOPMENT_KEY,
    },
}


def refused(variables: dict[str, str]) -> bool:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env = {**base, "DJANGO_DEBUG": "false", **variables}
    result = subprocess.run(
        [sys.executable, "-c", "import trading.settings"], cwd=BASE_DIR, env=env, capture_output=True, text=True
    )
    return result.returncode != 0 and "ImproperlyConfigured: DJANGO_SECRET_KEY" in result.stderr


def main() -> int:
    failures = [name for name, variables in CASES.items() if not refused(variables)]
    for name in failures:
        print(f"production settings started with {name}: they must refuse it", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
