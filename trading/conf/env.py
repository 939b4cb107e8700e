"""Reading the environment: every setting comes through here, and a bad value fails at start-up naming
its variable (ImproperlyConfigured), never later. `var/run.env`, written by `make run` while it runs,
fills in the addresses of the embedded services for commands started by hand.
"""

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / "var" / "run.env")  # never overrides the real environment

T = TypeVar("T")


def read(name: str, parse: Callable[[], T]) -> T:
    """Parse one variable; a bad value names the variable at start-up."""
    try:
        return parse()
    except (ValueError, TypeError, InvalidOperation) as error:
        raise ImproperlyConfigured(f"{name}: bad value {env.str(name, default='')!r} ({error})") from error


def non_negative_decimal(name: str, default: str) -> Decimal:
    value = read(name, lambda: Decimal(env.str(name, default=default)))
    if not value.is_finite() or value < 0:
        raise ImproperlyConfigured(f"{name}: must be a non-negative number, got {value}")
    return value


def positive_int(name: str, default: int) -> int:
    value = read(name, lambda: env.int(name, default=default))
    if value <= 0:
        raise ImproperlyConfigured(f"{name}: must be a positive integer, got {value}")
    return value


def redis_url(name: str, default: str) -> str:
    value = env.str(name, default=default)
    if urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(f"{name}: expected a redis:// URL, got {value!r}")
    return value
