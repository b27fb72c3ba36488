"""The History page's reads: reviewed and unreviewed frames by site, camera, date range,
score band, verdict and model label, newest first, a page at a time.

Paging is by key (captured_at, id), never by offset, and each page does bounded work: it
looks at most ``scan`` frames past the previous page's last one, read in capture order
through an index (one camera: (camera_id, captured_at); one site: that index per camera,
merged; all sites: (captured_at)), filters those, and returns the first ``page_size``
that match. A page that finds fewer says how far back it looked (``searched_to``) and
the next page goes on from there, so a rare filter (a week's confirms among a million
frames) costs a few more pages, never a read of the whole history.

The score and label are those of the frame's site's rollout model (the label: its most
probable class); the verdicts are every ranger's, one row per frame and ranger.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.localtime import zone
from bearwatch.schema import Camera, Decision, Frame, ModelVersion, Prediction, Site, User, Verdict

PAGE_SIZE = 50
SCAN = 2000  # frames a page looks at, at most


class VerdictFilter(str, enum.Enum):
    ANY = "any"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"
    MISSED = "missed"
    UNREVIEWED = "unreviewed"


_VERDICT_OF = {VerdictFilter.CONFIRMED: Verdict.CONFIRM, VerdictFilter.DISMISSED: Verdict.DISMISS,
               VerdictFilter.MISSED: Verdict.MISSED}


@dataclass(frozen=True)
class HistoryFilter:
    site: str | None = None
    camera_id: int | None = None
    start: datetime | None = None  # UTC, inclusive
    end: datetime | None = None  # UTC, exclusive
    score_min: float | None = None  # the rollout model's bear score, inclusive
    score_max: float | None = None
    verdict: VerdictFilter = VerdictFilter.ANY
    label: str | None = None  # the rollout model's most probable class


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the next page starts with the frames before this one."""

    captured_at: datetime
    frame_id: int


@dataclass(frozen=True)
class GivenVerdict:
    reviewer: str
    verdict: Verdict
    decided_at: datetime


@dataclass(frozen=True)
class HistoryRow:
    frame_id: int
    site: str
    camera: str
    captured_at: datetime
    path: str  # relative to the frame store root
    label: str | None  # None: no prediction of the site's rollout model
    score: float | None
    flagged: bool
    verdicts: tuple[GivenVerdict, ...]  # oldest first


@dataclass(frozen=True)
class HistoryPage:
    rows: tuple[HistoryRow, ...]
    next: Cursor | None  # None: nothing older
    searched_to: datetime | None  # the oldest frame this page looked at (a short page: how far back)
    scanned: int | None  # frames looked at (None: a full page, which stopped early)


def day_bounds(first: date, last: date, zone_name: str | None) -> tuple[datetime, datetime]:
    """The UTC bounds of the local days ``first`` .. ``last`` (inclusive) in the zone: the
    History page's date inputs read as the page shows times (bearwatch.localtime)."""
    tz = zone(zone_name)
    start = datetime.combine(first, time(0), tzinfo=tz).astimezone(timezone.utc)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz).astimezone(timezone.utc)
    return start, end


def cameras_of(session: Session, site: str) -> list[tuple[int, str]]:
    """The site's cameras (id, name), by name, for the camera picker."""
    return [(i, n) for i, n in session.execute(
        sa.select(Camera.id, Camera.name).join(Site, Site.id == Camera.site_id).where(Site.name == site).order_by(Camera.name)
    )]


def label_options(session: Session, site: str | None = None) -> list[str]:
    """The classes of the rollout models (of one site, or of all), for the label picker."""
    stmt = sa.select(ModelVersion.classes).join(Site, Site.rollout_model_id == ModelVersion.id)
    if site is not None:
        stmt = stmt.where(Site.name == site)
    return sorted({c for classes in session.scalars(stmt) for c in classes})


def _before(cursor: Cursor | None) -> sa.ColumnElement[bool]:
    if cursor is None:
        return sa.true()
    # The range bound first, so an index on captured_at starts at the cursor, not at the newest frame.
    return sa.and_(Frame.captured_at <= cursor.captured_at,
                   sa.or_(Frame.captured_at < cursor.captured_at, Frame.id < cursor.frame_id))


def _scan(flt: HistoryFilter, camera_ids: list[int] | None, after: Cursor | None, scan: int) -> sa.Subquery:
    """The next ``scan`` frames (id, captured_at) before ``after``, newest first, each read
    through an index: per camera when the filter names cameras."""
    def part(*where: sa.ColumnElement[bool]) -> sa.Select:
        stmt = sa.select(Frame.id.label("frame_id"), Frame.captured_at.label("captured_at")).where(_before(after), *where)
        if flt.start is not None:
            stmt = stmt.where(Frame.captured_at >= flt.start)
        if flt.end is not None:
            stmt = stmt.where(Frame.captured_at < flt.end)
        return stmt.order_by(Frame.captured_at.desc(), Frame.id.desc()).limit(scan)

    if camera_ids is None:
        return part().subquery("scan")
    parts = [sa.select(p.c.frame_id, p.c.captured_at) for p in (part(Frame.camera_id == c).subquery() for c in camera_ids)]
    merged = sa.union_all(*parts).subquery("per_camera") if len(parts) > 1 else parts[0].subquery("per_camera")
    return (
        sa.select(merged.c.frame_id, merged.c.captured_at)
        .order_by(merged.c.captured_at.desc(), merged.c.frame_id.desc()).limit(scan).subquery("scan")
    )


def _label_is(label: str, classes: list[str]) -> sa.ColumnElement[bool]:
    """The prediction's most probable class is ``label`` (ties count for each)."""
    def p(c: str) -> sa.ColumnElement[float]:
        return sa.func.coalesce(Prediction.probabilities[c].as_float(), 0.0)
    return sa.and_(Prediction.probabilities[label].as_float().is_not(None), *(p(label) >= p(c) for c in classes if c != label))


def _filtered(stmt: sa.Select, flt: HistoryFilter, classes: list[str]) -> sa.Select:
    """``stmt`` (frames joined to their site and rollout prediction) with the filter's site,
    score band, label and verdict."""
    if flt.site is not None:
        stmt = stmt.where(Site.name == flt.site)
    if flt.score_min is not None:
        stmt = stmt.where(Prediction.positive_score >= flt.score_min)
    if flt.score_max is not None:
        stmt = stmt.where(Prediction.positive_score <= flt.score_max)
    if flt.label is not None:
        stmt = stmt.where(_label_is(flt.label, classes))
    decided = sa.select(Decision.id).where(Decision.frame_id == Frame.id)
    if flt.verdict is VerdictFilter.UNREVIEWED:
        stmt = stmt.where(~decided.exists())
    elif flt.verdict is not VerdictFilter.ANY:
        stmt = stmt.where(decided.where(Decision.verdict == _VERDICT_OF[flt.verdict]).exists())
    return stmt


def _verdicts(session: Session, frame_ids: list[int]) -> dict[int, list[GivenVerdict]]:
    given: dict[int, list[GivenVerdict]] = {}
    if frame_ids:
        for frame_id, name, verdict, at in session.execute(
            sa.select(Decision.frame_id, User.name, Decision.verdict, Decision.decided_at)
            .join(User, User.id == Decision.reviewer_id)
            .where(Decision.frame_id.in_(frame_ids)).order_by(Decision.decided_at, Decision.id)
        ):
            given.setdefault(frame_id, []).append(GivenVerdict(name, verdict, at))
    return given


def history_page(
    session: Session, flt: HistoryFilter, *, after: Cursor | None = None, page_size: int = PAGE_SIZE, scan: int = SCAN
) -> HistoryPage:
    """One page of the frames that match ``flt``, newest first, from before ``after``."""
    camera_ids: list[int] | None = None
    if flt.camera_id is not None:
        camera_ids = [flt.camera_id]
    elif flt.site is not None:
        camera_ids = [i for i, _ in cameras_of(session, flt.site)]
        if not camera_ids:
            return HistoryPage((), None, None, 0)
    classes = label_options(session, flt.site) if flt.label is not None else []
    scanned = _scan(flt, camera_ids, after, scan)
    stmt = (
        sa.select(Frame.id, Site.name, Camera.name, Frame.captured_at, Frame.path, Prediction.probabilities,
                  Prediction.positive_score, Prediction.flagged)
        .select_from(scanned)
        .join(Frame, Frame.id == scanned.c.frame_id)
        .join(Camera, Camera.id == Frame.camera_id)
        .join(Site, Site.id == Camera.site_id)
        .outerjoin(Prediction, sa.and_(Prediction.frame_id == Frame.id, Prediction.model_version_id == Site.rollout_model_id))
        .order_by(scanned.c.captured_at.desc(), scanned.c.frame_id.desc())
        .limit(page_size)
    )
    rows = session.execute(_filtered(stmt, flt, classes)).all()

    given = _verdicts(session, [r[0] for r in rows])
    page = tuple(
        HistoryRow(fid, site, camera, at, path, max(probs, key=probs.get) if probs else None, score, bool(flagged),
                   tuple(given.get(fid, ())))
        for fid, site, camera, at, path, probs, score, flagged in rows
    )
    if len(page) == page_size:
        last = page[-1]
        return HistoryPage(page, Cursor(last.captured_at, last.frame_id), last.captured_at, None)
    # A short page: how far back it looked, and whether there is more before that (the
    # scan was full), in one more statement over the same bounded scan.
    size = sa.select(sa.func.count()).select_from(scanned).scalar_subquery()
    oldest = session.execute(
        sa.select(scanned.c.captured_at, scanned.c.frame_id, size)
        .order_by(scanned.c.captured_at, scanned.c.frame_id).limit(1)
    ).first()
    if oldest is None:
        return HistoryPage(page, None, None, 0)
    oldest_at, oldest_id, n = oldest
    return HistoryPage(page, Cursor(oldest_at, oldest_id) if n >= scan else None, oldest_at, n)
