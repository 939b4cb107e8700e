"""Alert evaluation as a pure function: rules + the latest figures + which alerts are open -> what changes.

An alert opens when its figure rises above the threshold, stays open (its
value refreshed) while it remains above, and resolves when it falls to or
below it. A missing figure (its source failed) neither opens nor resolves:
no data is not good news. A disabled rule resolves its open alert.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# The default rules: key (= the key figure it watches) -> what it means for the operator.
DEFAULT_RULE_DESCRIPTIONS: dict[str, str] = {
    "memory_percent": "Host memory use above the threshold (%)",
    "api_p95_ms": "API latency p95 above the threshold (ms)",
    "db_p95_ms": "Database command p95 above the threshold (ms)",
    "redis_memory_ratio": "Redis memory above this fraction of maxmemory",
    "persister_backlog": "Ticks waiting to be stored above the backlog bound",
    "dead_letters": "Failed background jobs waiting in the dead-letter store",
    "ws_errors_per_second": "WebSocket error frames per second above the threshold",
}


@dataclass(frozen=True)
class RuleSpec:
    key: str
    figure: str
    threshold: float
    enabled: bool = True


@dataclass
class Evaluation:
    opened: dict[str, float] = field(default_factory=dict)  # rule key -> value that opened it
    still_open: dict[str, float] = field(default_factory=dict)  # rule key -> latest value
    resolved: dict[str, float | None] = field(default_factory=dict)  # rule key -> value that cleared it


def breached(rule: RuleSpec, value: float) -> bool:
    return value > rule.threshold


def evaluate(rules: Iterable[RuleSpec], figures: Mapping[str, float | None], open_keys: Iterable[str]) -> Evaluation:
    open_now = set(open_keys)
    result = Evaluation()
    for rule in rules:
        is_open = rule.key in open_now
        value = figures.get(rule.figure)
        if not rule.enabled:
            if is_open:
                result.resolved[rule.key] = value
            continue
        if value is None:
            continue
        if breached(rule, value):
            (result.still_open if is_open else result.opened)[rule.key] = value
        elif is_open:
            result.resolved[rule.key] = value
    return result


def alert_message(rule: RuleSpec, value: float, description: str = "") -> str:
    return f"{description or rule.figure}: {value:.4g} > {rule.threshold:.4g}"
