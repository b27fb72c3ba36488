"""Reads of a time span whose rows stop changing once their clock hour has closed
(``SETTLED`` after it ended): a process keeps what it read of the closed hours, per key
and span start, and then reads only the hours closed since and the open ones. The
guard's camera-hours (shadow.camera_hours) and alert keys (shadow.alert_rates) use it, so
its pass every minute does not grow with the baseline or the time since promotion.

Keys are (camera id, time, is_night). A row written later still into a closed hour (old
footage backfilled) is not seen by a process that already read that hour."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from shadow.lru import LruCache

FrameKey = tuple[int, datetime, bool | None]  # camera id, captured at (or the hour), is_night
SETTLED = timedelta(minutes=10)
Read = Callable[[datetime, datetime], list[FrameKey]]


def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def as_utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)  # naive is UTC


@dataclass(frozen=True)
class _Closed:
    upto: datetime  # an hour boundary: the keys cover [start, upto)
    keys: tuple[FrameKey, ...]


class ClosedSpans:
    """At most ``size`` spans and ``max_keys`` keys in all; the least recently used go first."""

    def __init__(self, size: int, max_keys: int) -> None:
        self._cache: LruCache[Hashable, _Closed] = LruCache(size, weight=lambda closed: len(closed.keys), max_weight=max_keys)

    def clear(self) -> None:
        self._cache.clear()

    def read(self, key: Hashable, start: datetime, end: datetime, *, closed: Read, fresh: Read) -> list[FrameKey]:
        """The keys of [start, end): the closed hours kept from earlier reads or read by
        ``closed`` (only those not in hand), the rest by ``fresh``."""
        start, end = as_utc(start), as_utc(end)
        boundary = hour_of(end - SETTLED)
        if boundary <= start:
            return fresh(start, end)
        cached = self._cache.get((key, start))
        if cached is None:
            keys = tuple(closed(start, boundary))
        elif cached.upto >= boundary:  # asked about an earlier end: its closed hours are all in hand
            keys = tuple(k for k in cached.keys if k[1] < boundary)
        else:
            keys = cached.keys + tuple(closed(cached.upto, boundary))
        if cached is None or cached.upto < boundary:
            self._cache.put((key, start), _Closed(boundary, keys))
        return [*keys, *fresh(boundary, end)]
