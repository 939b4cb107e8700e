"""Writes for the market: the listed universe."""

from collections.abc import Iterator

from apps.core.cache import invalidate_namespace
from apps.market.models import Symbol
from apps.market.universe import generate_universe

BATCH_SIZE = 200


def symbols_seed(*, count: int, seed: int = 7) -> Iterator[int]:
    """Create the first `count` companies of the demo universe that do not exist yet.

    Idempotent: existing tickers are left alone. Yields how many companies were
    handled after each batch, so a command can show progress.
    """
    universe = generate_universe(count, seed=seed)
    existing = set(Symbol.objects.values_list("ticker", flat=True))
    for start in range(0, len(universe), BATCH_SIZE):
        batch = universe[start : start + BATCH_SIZE]
        Symbol.objects.bulk_create(
            Symbol(ticker=c.ticker, name=c.name, sector=c.sector, initial_price=c.initial_price)
            for c in batch
            if c.ticker not in existing
        )
        yield len(batch)
    invalidate_namespace("symbols")  # bulk_create sends no post_save
