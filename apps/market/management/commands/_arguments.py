"""Argument parsers for the market commands: a bad value is one clear CommandError line."""

import math
from collections.abc import Callable

from django.core.management.base import CommandError


def bounded(name: str, kind: type[int] | type[float], low: float, high: float) -> Callable[[str], float]:
    """A parser accepting `kind` values with low < value <= high (low itself when kind is int)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise CommandError(f"--{name}: {text!r} is not a {'whole ' if kind is int else ''}number") from None
        too_low = value < low if kind is int else value <= low
        if not math.isfinite(value) or too_low or value > high:
            bound = f"between {low} and {high}" if kind is int else f"greater than {low} and at most {high}"
            raise CommandError(f"--{name}: must be {bound}, got {text}")
        return value

    return parse
