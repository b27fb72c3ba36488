"""The shadow process's read-once caches (shadow.lru) stay within their budgets: by
entries, and by total weight (bytes) where given, the least recently used going first."""

from __future__ import annotations

import numpy as np
import pytest

from shadow import drift_windows
from shadow.lru import LruCache


def test_entries_and_weight_both_bound_the_cache_the_least_recently_used_going_first() -> None:
    cache: LruCache[str, bytes] = LruCache(3, weight=len, max_weight=10)
    for key in "abc":
        cache.put(key, b"xx")
    assert cache.get("a") == b"xx"  # now the most recently used
    cache.put("d", b"xx")  # four entries: the least recently used, b, goes
    assert cache.get("b") is None and len(cache) == 3 and cache.weight == 6
    cache.put("e", b"x" * 7)  # 13 bytes: c, then a, go
    assert [cache.get(k) is not None for k in "acde"] == [False, False, True, True]
    assert cache.weight == 9
    cache.put("e", b"x")  # replacing an entry replaces its weight
    assert cache.weight == 3
    cache.put("big", b"x" * 50)  # over the budget alone: kept (in use), the rest go
    assert len(cache) == 1 and cache.weight == 50
    cache.clear()
    assert len(cache) == 0 and cache.weight == 0
    with pytest.raises(ValueError, match="go together"):
        LruCache(3, weight=len)


def test_drift_keeps_its_hours_within_its_memory_budget() -> None:
    """A process with many manual sites kept up to 4,096 hours (about 1.2 GB at 0.3 MB an
    hour); now they are held to drift_windows.MEMORY_BUDGET."""
    packed = np.zeros(5_000, dtype=[("x", "i8"), ("y", "f8")])  # 80 KB, a busy hour's candidates
    pieces = drift_windows._PIECES
    pieces.clear()
    try:
        for hour in range(4096):
            pieces.put(("site", hour), drift_windows._Piece({}, packed, 0))
        assert pieces.weight <= drift_windows.MEMORY_BUDGET < 4096 * packed.nbytes
        assert pieces.get(("site", 4095)) is not None and pieces.get(("site", 0)) is None
    finally:
        pieces.clear()
