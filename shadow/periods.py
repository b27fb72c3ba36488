"""Stage periods read back from the rollout ledger, which frames count as usable, and a
site's thresholds.

A period is [changed_at of a ledger row, changed_at of the next row) in the row's
``to_stage``; the last one runs to ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.park_file import Thresholds
from bearwatch.schema import Frame, Site, Stage, StageChange

# A frame this dark or this uniform is a dark, covered or broken camera, not the world:
# it counts neither as camera time nor as drift (mean grey 0..255, grey std).
DARK_BRIGHTNESS_MAX = 8.0
UNIFORM_CONTRAST_MAX = 3.0


def usable_frame() -> sa.ColumnElement[bool]:
    """SQL condition: the frame shows a scene (not black, not near-uniform). Frames
    without stats (None) are kept."""
    return sa.and_(
        sa.or_(Frame.brightness.is_(None), Frame.brightness > DARK_BRIGHTNESS_MAX),
        sa.or_(Frame.contrast.is_(None), Frame.contrast > UNIFORM_CONTRAST_MAX),
    )


def hour_bucket(session: Session, column: Any) -> sa.ColumnElement[str]:
    """SQL: the clock hour of a timestamp as 'YYYY-MM-DD HH', the same text on both
    databases (timestamps are stored naive UTC, see schema.UTCDateTime)."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.to_char(column, "YYYY-MM-DD HH24")
    return sa.func.substr(column, 1, 13)  # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' text


@dataclass(frozen=True)
class Period:
    stage: Stage
    start: datetime
    end: datetime  # exclusive; ``now`` for the current period
    model_version_id: int | None


def stage_periods_by_site(session: Session, site_ids: Sequence[int], now: datetime) -> dict[int, list[Period]]:
    """stage_periods of many sites in one statement."""
    if not site_ids:
        return {}
    rows = session.execute(
        sa.select(StageChange.site_id, StageChange.to_stage, StageChange.changed_at, StageChange.model_version_id)
        .where(StageChange.site_id.in_(site_ids), StageChange.changed_at <= now)
        .order_by(StageChange.site_id, StageChange.changed_at, StageChange.id)
    ).all()
    periods: dict[int, list[Period]] = {site_id: [] for site_id in site_ids}
    for i, (site_id, stage, start, model_id) in enumerate(rows):
        end = rows[i + 1].changed_at if i + 1 < len(rows) and rows[i + 1].site_id == site_id else now
        if end > start:
            periods[site_id].append(Period(stage, start, end, model_id))
    return periods


def stage_periods(session: Session, site: Site, now: datetime) -> list[Period]:
    return stage_periods_by_site(session, [site.id], now)[site.id]


def latest_manual_periods(session: Session, site_ids: Sequence[int], now: datetime) -> dict[int, Period]:
    """latest_manual_period of many sites in one statement (sites never in manual left out)."""
    latest = {}
    for site_id, periods in stage_periods_by_site(session, site_ids, now).items():
        manual = [p for p in periods if p.stage is Stage.MANUAL]
        if manual:
            latest[site_id] = manual[-1]
    return latest


def latest_manual_period(session: Session, site: Site, now: datetime) -> Period | None:
    """The baseline's period: the current manual period, or the last one before the
    site left manual."""
    manual = [p for p in stage_periods(session, site, now) if p.stage is Stage.MANUAL]
    return manual[-1] if manual else None


def thresholds_from(stored: dict[str, Any] | None) -> Thresholds:
    """Stored overrides (a site's, or a ledger row's) over the defaults; keys this version
    does not know are ignored, so an older or newer row still loads."""
    return Thresholds.model_validate({k: v for k, v in (stored or {}).items() if k in Thresholds.model_fields})


def thresholds_of(site: Site) -> Thresholds:
    """The site's thresholds: its stored overrides over the defaults."""
    return thresholds_from(site.thresholds)
