"""A small thread-safe least-recently-used map, for what a shadow process reads once and
keeps: closed drift reference windows and hours (shadow.drift_windows) and the guard's
camera-hours and alerts of closed clock hours (shadow.closed_spans). Bounded by entries and, given a
``weight`` (an entry's bytes, say), by their total: the oldest used goes first, so a
process with many sites stays within its budget instead of growing with them."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    def __init__(self, size: int, *, weight: Callable[[V], int] | None = None, max_weight: int | None = None) -> None:
        if (weight is None) != (max_weight is None):
            raise ValueError("weight and max_weight go together")
        self._size, self._weight, self._max_weight = size, weight, max_weight
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: K, value: V) -> None:
        weight = self._weight(value) if self._weight is not None else 0
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._total -= old[1]
            self._items[key] = (value, weight)
            self._total += weight
            # the newest entry stays even when it alone is over the budget: it is in use now
            while len(self._items) > 1 and (len(self._items) > self._size
                                            or (self._max_weight is not None and self._total > self._max_weight)):
                self._total -= self._items.popitem(last=False)[1][1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._total = 0

    @property
    def weight(self) -> int:
        """The entries' total weight (0 without a ``weight`` function)."""
        return self._total

    def __len__(self) -> int:
        return len(self._items)
