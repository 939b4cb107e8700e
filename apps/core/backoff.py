"""The one backoff: exponential delays, capped, with optional jitter.

Used by task retries (apps/core/jobs.py, Property 30), a trader's busy order retries
(apps/portfolio/services.py), the simulator's redelivery while Redis is down
(apps/market/simulator.py) and the persister's retries while MongoDB or Redis fails
(apps/market/persister.py).
"""

import random


def backoff_delay(
    retries: int,
    *,
    base: float,
    maximum: float,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number `retries + 1`: base * 2**retries, capped, minus up to `jitter` of it."""
    ceiling = min(maximum, base * 2 ** min(retries, 64))
    if not jitter:
        return ceiling
    return ceiling * (1 - jitter * (rng or random).random())
