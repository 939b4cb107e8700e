"""Property 41 on the real cache (Redis L2 + in-process L1); bench/cache.py measures it on the app's read mix."""

import itertools
from collections import Counter

from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.core.cache import cached

_runs = itertools.count()
NAMESPACES = ["leaderboards", "analytics", "prices", "symbols", "profiles"]

# A read pattern: which (data type, key) each request reads. Real traffic repeats hot keys (the
# leaderboard's first page, a popular symbol's quote); a key read only once can never be saved.
read_patterns = st.integers(min_value=1, max_value=8).flatmap(
    lambda hot_keys: st.lists(
        st.tuples(st.sampled_from(NAMESPACES), st.integers(min_value=0, max_value=hot_keys - 1)),
        min_size=5 * hot_keys * len(NAMESPACES),
        max_size=5 * hot_keys * len(NAMESPACES) + 100,
    )
)


def database_reads(pattern: list[tuple[str, int]], run: str) -> int:
    """Serve every read of `pattern` through the cache; return how many reached the database (the loader)."""
    calls: Counter[tuple[str, int]] = Counter()

    def loader_for(read: tuple[str, int]) -> object:
        calls[read] += 1
        return {"rows": [read[1]] * 10}

    for namespace, key in pattern:
        assert cached(namespace, f"{run}-{key}", lambda read=(namespace, key): loader_for(read)) == {"rows": [key] * 10}
    return sum(calls.values())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(read_patterns)
def test_caching_cuts_database_reads_by_at_least_60_percent(pattern: list[tuple[str, int]]) -> None:
    """Feature: trading-performance-optimization, Property 41: For any system operation pattern, effective caching
    should reduce database load by 60% — for any read pattern that repeats its keys (each at least five times on
    average), reads through the cache reach the database at most 40 % as often as with the cache off."""
    run = f"p41-{next(_runs)}"
    with override_settings(CACHE_ENABLED=False):
        uncached = database_reads(pattern, f"{run}-off")
    with_cache = database_reads(pattern, f"{run}-on")

    assert uncached == len(pattern)
    assert with_cache == len(set(pattern))  # each distinct read loads once, then hits
    assert with_cache <= 0.4 * uncached
