"""Market data on its own database alias (ADR 0005).

Tick buckets are written ten times a second and read by history pages; every
other model (traders, orders, symbols) stays on "default". With the "market"
alias served by another database process, a tick write never queues a trading
read behind it. Routed by model label so this module imports no app.
"""

from typing import Any

MARKET_ALIAS = "market"
MARKET_MODELS = frozenset({"market.tickbucket"})


class MarketDataRouter:
    def _alias(self, model: Any) -> str:
        return MARKET_ALIAS if model._meta.label_lower in MARKET_MODELS else "default"

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return self._alias(model)

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return self._alias(model)

    def allow_relation(self, first: Any, second: Any, **hints: Any) -> bool:
        return self._alias(first) == self._alias(second)

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        on_market = f"{app_label}.{model_name}" in MARKET_MODELS
        return db == (MARKET_ALIAS if on_market else "default")
