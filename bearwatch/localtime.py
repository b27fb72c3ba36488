"""Times as the park reads them: every page, CLI line and alert shows a site's local time
(its IANA time zone, ``sites.timezone``, from the park file); exports, the database and
hover titles keep UTC. Timestamps are stored naive UTC (bearwatch.schema.UTCDateTime) and
come back UTC-aware."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bearwatch.errors import ConfigError

UTC_NAME = "UTC"


@lru_cache(maxsize=64)
def zone(name: str | None) -> ZoneInfo:
    """The time zone called ``name`` (IANA, e.g. ``America/Denver``); UTC for None or empty."""
    if not name:
        return ZoneInfo(UTC_NAME)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {name!r} (use an IANA name such as 'America/Denver' or 'UTC')") from exc


def check_zone(name: str) -> str:
    """``name`` if it names a time zone; else the ConfigError's message as a ValueError (for validators)."""
    try:
        zone(name)
    except ConfigError as exc:
        raise ValueError(str(exc)) from exc
    return name


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def local(moment: datetime, zone_name: str | None) -> datetime:
    return _aware(moment).astimezone(zone(zone_name))


def local_text(moment: datetime | None, zone_name: str | None, *, seconds: bool = False, date: bool = True) -> str:
    """``2026-11-30 01:23 MST``: the moment in the zone, with the zone's abbreviation so a
    reader never wonders which clock it is ("" for None)."""
    if moment is None:
        return ""
    fmt = ("%Y-%m-%d " if date else "") + ("%H:%M:%S" if seconds else "%H:%M") + " %Z"
    return local(moment, zone_name).strftime(fmt)


def utc_text(moment: datetime | None, *, seconds: bool = True) -> str:
    """``2026-11-30 08:23:05Z``: the same moment in UTC, for hover titles and exports."""
    if moment is None:
        return ""
    return _aware(moment).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + "Z"


def park_zone(zone_names: Iterable[str]) -> str:
    """The zone for what belongs to no one site (users, models, park-wide lists): the sites'
    zone when they share one, else UTC."""
    names = set(zone_names)
    return names.pop() if len(names) == 1 else UTC_NAME


def when_html(moment: datetime | None, zone_name: str | None, *, seconds: bool = False, date: bool = True) -> str:
    """local_text with the UTC time on hover (for HTML captions and markdown)."""
    if moment is None:
        return ""
    return f'<span title="{utc_text(moment)}">{local_text(moment, zone_name, seconds=seconds, date=date)}</span>'


def utc_hours_text(hours: Iterable[int], zone_name: str | None, on: datetime) -> str:
    """Trial hours, which are whole UTC hours, as the site's clock reads them on the day of
    ``on`` (the offset changes with daylight saving): ``19:00, 20:00 MST (2, 3 UTC)``."""
    hours = sorted(hours)
    utc_list = ", ".join(map(str, hours))
    if zone(zone_name).key == UTC_NAME:
        return f"{utc_list} UTC"
    day = _aware(on).astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    starts = [local(day.replace(hour=h), zone_name) for h in hours]
    return f"{', '.join(t.strftime('%H:%M') for t in starts)} {starts[0].strftime('%Z')} ({utc_list} UTC)"
