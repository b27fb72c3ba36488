"""What reaches a ranger, live bears first: held alerts (longest held first), flags of the last
hour (newest first), second looks (a lone verdict against the model, or two rangers who
disagree: shadow.truth.needs_another_look), older flags (newest first), follow-ups
around found misses, then the audit sample of frames the site's rollout model did not
flag (so recall can be measured). Frames this ranger already
decided are left out; a frame flagged only by a challenger model is not flagged here.

The audit is the designed probability sample of shadow.audit_design: unflagged frames
are stratified by score band and day/night (near the model's threshold, where misses
live, at audit_near_rate; the rest at audit_night_rate by night and audit_rate by day),
and a frame is in it when a hash of its id falls below its stratum's rate: stable (the
same frames every time), unbiased (ids follow capture order, not content). The selection
runs in SQL (audit_design.audit_rate_sql), the same formula as audit_design.in_audit.
Each item carries its stratum and inclusion probability (flagged frames and held alerts:
'flagged', 1), as the verdict on it will store them.

Two statements whatever the number of sites (on PostgreSQL with a SET LOCAL before the
second and one after it, which only set the planner: ``_INDEX_PLANS``). The first reads
the sites (each with its rollout model's threshold and its cameras' ids) and the ranger's
user id. The second is built from that list: each section of each site is one branch of
a UNION ALL, ordered and limited as the site's own query, so each branch walks an index:
alerts by (site, status, created_at) and alert_flags by alert, frames by (camera,
captured_at), the neighbours of a found miss by (camera, captured_at) range. On
PostgreSQL every section of all sites is one branch (a site's own branch only for an
audit wider than the index's): held alerts, second looks, follow-ups (found miss by found
miss, so a page and the count stop at their limit: ``_follow_ups``), and, reading the partial indexes of
migration 0016, the flagged frames and (for sites whose audit rates are at most
bearwatch.schema.AUDIT_INDEX_RATE) the audit sample: the newest flags by scoring time
(``_indexed_flagged``), the frames whose id hash may put them in an audit sample
(``_indexed_audit``); a page reads a page's worth of them whatever the window holds. Then
a frame keeps its first section, the first ``limit`` in queue order (the same over all
sites as within one) are joined to their rows, and the size of the whole queue comes with
them (``QueueSize``): exact up to ``QUEUE_COUNT_CAP``, past it "more than the cap" (shown
as "1,000+"), so each branch reads at most the cap and one more frame ids for it, whatever
the window holds.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.auth import Actor
from bearwatch.park_file import Thresholds
from bearwatch.partitions import at_least, frame_id_floor
from bearwatch.schema import (
    AUDIT_INDEX_PREDICATE,
    AUDIT_INDEX_RATE,
    AUDIT_PREDICTION_PREDICATE,
    Alert,
    AlertFlag,
    AlertStatus,
    Camera,
    Decision,
    Frame,
    FrameVotes,
    ModelVersion,
    Prediction,
    Site,
    Stage,
    User,
    UTCDateTime,
    Verdict,
)
from shadow import alert_rules, audit_design, follow_up
from shadow.alert_rules import HASH_MODULUS, HASH_MULTIPLIER, audit_threshold
from shadow.escalation import escalates_at
from shadow.periods import thresholds_of
from shadow.second_looks import second_look_frames

FRESH_FLAG = timedelta(hours=1)  # a flag this recent may still have its bear in view
# The queue's size is counted exactly up to this many frames, and shown as "1,000+" past
# it: a ranger acts no differently on 34,127 than on 1,000+, and each section reads at most
# this many frame ids (and one more) for the count. Its cost grows with the cap, not the
# history: about 15 rows per frame counted past the page (an audit hit costs ~5 entries of
# the audit index), 15k rows and ~40 ms at 1,000 on PostgreSQL, twice that at 2,000, which
# alone would spend most of the verdict round trip's 100 ms (docs/benchmarks.md, season).
QUEUE_COUNT_CAP = 1000


class QueueReason(str, enum.Enum):
    PENDING_ALERT = "pending_alert"
    FLAGGED = "flagged"
    AUDIT = "audit"
    FOLLOW_UP = "follow_up"  # next to a bear the audit found: completes that sighting
    SECOND_LOOK = "second_look"  # a lone verdict against the model, or two that disagree (shadow.truth)


@dataclass(frozen=True)
class QueueItem:
    frame_id: int
    path: str
    camera_id: int
    camera: str
    site: str
    captured_at: datetime
    model_label: str | None  # the model's most probable class
    model_score: float | None  # its positive (bear) score
    stage: Stage
    reason: QueueReason
    on_confirm: str  # what a confirm (or 'missed') will do
    pending_since: datetime
    alert_id: int | None
    stratum: str | None  # audit_design.Stratum: 'flagged' for held alerts and flagged frames
    inclusion_prob: float  # the chance the review design had of showing this frame (flagged: 1)
    flagged: bool = False  # the site's rollout model flagged it (confirm), or not (missed)
    # held alerts: when it goes to the channels unverified if nobody decides (shadow.escalation),
    # or when it did
    escalates_at: datetime | None = None
    escalated_at: datetime | None = None


@dataclass(frozen=True)
class QueueSize:
    """How many frames the queue holds: ``count`` exactly, or (``capped``) more than
    ``count``, the cap it was counted to."""

    count: int
    capped: bool = False

    def __str__(self) -> str:
        return f"{self.count:,}+" if self.capped else f"{self.count:,}"

    def exceeds(self, shown: int) -> bool:
        """Whether the queue holds more than ``shown`` frames."""
        return self.capped or self.count > shown


def _top_label(probabilities: dict[str, float] | None) -> str | None:
    return max(probabilities, key=lambda k: probabilities[k]) if probabilities else None


def review_queue(
    session: Session,
    reviewer: Actor,
    now: datetime,
    *,
    site: str | None = None,
    limit: int = 50,
    window: timedelta = timedelta(hours=24),
) -> list[QueueItem]:
    """The next ``limit`` frames for ``reviewer`` in the order of ``_rank``: held alerts (no
    time limit), then the other sections' frames captured within ``window`` before ``now``."""
    return review_queue_and_size(session, reviewer, now, site=site, limit=limit, window=window, count=False)[0]


def review_queue_and_size(
    session: Session,
    reviewer: Actor,
    now: datetime,
    *,
    site: str | None = None,
    limit: int = 50,
    window: timedelta = timedelta(hours=24),
    count: bool = True,
    count_cap: int | None = None,
) -> tuple[list[QueueItem], QueueSize]:
    """``review_queue``, and (with ``count``) ``queue_size`` in the same statement: two
    statements whatever the number of sites (on PostgreSQL two SET LOCALs around the
    second). A page that must show its frames before the count is known (the Review page)
    reads them apart: ``review_queue``, then ``queue_size``."""
    cap = QUEUE_COUNT_CAP if count_cap is None else count_cap
    sites, user_id = _sites(session, reviewer, site)
    if not sites:
        return [], QueueSize(0)
    since = now - window
    per_camera = session.get_bind().dialect.name == "postgresql"
    branches = _branches(session, sites, user_id, since, limit, indexed=per_camera)
    top = _first_frames(branches, now, limit, per_camera=per_camera)
    size = _queue_size(branches, cap, per_camera=per_camera) if count else sa.literal(0, sa.Integer)
    with _index_plans(session, per_camera):
        rows = session.execute(
            sa.select(Frame, Camera.name, Prediction, Alert, top.c.section, top.c.flag_id, size)
            .select_from(top)
            .join(Frame, Frame.id == top.c.frame_id)
            .join(Camera, Camera.id == Frame.camera_id)
            # by its frame too: on the partitioned layout the one partition of predictions it lies in
            .outerjoin(Prediction, sa.and_(Prediction.id == top.c.prediction_id, Prediction.frame_id == top.c.frame_id))
            .outerjoin(Alert, Alert.id == top.c.alert_id)
            .options(sa.orm.defer(Prediction.embedding))
        ).all()
    site_of = {camera_id: s for s in sites for camera_id in s.camera_ids}
    items = [
        _queue_item(site_of[frame.camera_id], now, frame, camera, pred, _SECTIONS[section], alert, processed=flag_id is not None)
        for frame, camera, pred, alert, section, flag_id, _ in rows
    ]
    items.sort(key=lambda i: _rank(i, now))
    counted = rows[0][-1] if rows else 0
    return items, QueueSize(min(counted, cap), capped=counted > cap)


def queue_size(
    session: Session,
    reviewer: Actor,
    now: datetime,
    *,
    site: str | None = None,
    window: timedelta = timedelta(hours=24),
    count_cap: int | None = None,
) -> QueueSize:
    """How many frames ``reviewer``'s queue holds in all (every site's sections, a frame
    once; of the one ``site``), exactly up to ``count_cap`` (default ``QUEUE_COUNT_CAP``)
    and capped past it: ``review_queue_and_size``'s count without the page, in two
    statements whatever the number of sites (on PostgreSQL two SET LOCALs around the
    second). Most of the queue's cost at a season's size is this count (each section reads
    up to the cap's frame ids), so the Review page shows the next frame first and this after."""
    cap = QUEUE_COUNT_CAP if count_cap is None else count_cap
    sites, user_id = _sites(session, reviewer, site)
    if not sites:
        return QueueSize(0)
    per_camera = session.get_bind().dialect.name == "postgresql"
    branches = _branches(session, sites, user_id, now - window, 1, indexed=per_camera)
    with _index_plans(session, per_camera):
        counted = session.execute(sa.select(_queue_size(branches, cap, per_camera=per_camera))).scalar_one()
    return QueueSize(min(counted, cap), capped=counted > cap)


@contextmanager
def _index_plans(session: Session, postgresql: bool) -> Iterator[None]:
    """On PostgreSQL, the queue's statement planned as ``_INDEX_PLANS`` says, and the
    planner's defaults back after it (on error the transaction ends, and SET LOCAL with it)."""
    if postgresql:
        session.execute(sa.text(_INDEX_PLANS))
    yield
    if postgresql:
        session.execute(sa.text(_DEFAULT_PLANS))


# PostgreSQL, for the queue's statement only: every branch walks its indexes by nested
# loops, a page's rows (or the sampled frames of the window, for the count). Estimating
# the rows a LIMIT needs through several joins, the planner would hash whole windows
# (every frame and prediction of the window read to keep 50: 10x the time at 100k frames).
# Parallel plans too: the flagged page reads the flags scored since a bound known only at
# run time, and estimating a third of all flags for it the planner chose a parallel scan
# of every flagged prediction instead (season bench, 10M frames: 136k buffers, a 360 ms
# verdict round trip; 50 ms without). (JIT is off for every connection: bearwatch.db.)
_INDEX_PLANS = ("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; "
                "SET LOCAL max_parallel_workers_per_gather = 0")
_DEFAULT_PLANS = ("SET LOCAL enable_hashjoin TO DEFAULT; SET LOCAL enable_mergejoin TO DEFAULT; "
                  "SET LOCAL max_parallel_workers_per_gather TO DEFAULT")

# The order in which the sections claim a frame: one that is in several is listed once,
# in the first of them.
_SECTIONS = (QueueReason.PENDING_ALERT, QueueReason.SECOND_LOOK, QueueReason.FLAGGED, QueueReason.AUDIT,
             QueueReason.FOLLOW_UP)
# A site's flagged frames may be its held alerts and second looks too, which claim them
# first: its flagged branch reads that many more rows (at most two pages) to keep a page.
# Second looks may be held alerts (at most a page less one, or the page is all held
# alerts): their branch reads two pages.
_PAGES = {QueueReason.FLAGGED: 3, QueueReason.SECOND_LOOK: 2}
# The sections that page through the capture window in time order.
_TIME_ORDERED = (QueueReason.FLAGGED, QueueReason.AUDIT)
_SECTION_RANK = {QueueReason.PENDING_ALERT: 0, QueueReason.SECOND_LOOK: 2, QueueReason.FOLLOW_UP: 4, QueueReason.AUDIT: 5}
_FRESH_RANK, _OLDER_FLAG_RANK = 1, 3
# SQLite refuses a compound SELECT of more than 500 parts: longer unions are nested.
_UNION_PARTS = 400
# A found miss's frame and the frames next to it (made once: an alias is costly to make).
_ANCHOR, _NEIGHBOUR = sa.orm.aliased(Frame, name="anchor"), sa.orm.aliased(Frame, name="neighbour")


def _rank(item: QueueItem, now: datetime) -> tuple[int, float, float, int]:
    """Live bears first: held alerts (each blocks an alert; longest held first, an alert's
    frames oldest first), flags of the last hour (newest first: the bear may still be in
    view), second looks, older flags (newest first), follow-ups, then the audit sample
    (oldest first). SQL: ``_queue_order``."""
    t = item.captured_at.timestamp()
    if item.reason is QueueReason.FLAGGED:
        return (_FRESH_RANK if item.captured_at >= now - FRESH_FLAG else _OLDER_FLAG_RANK, 0.0, -t, item.frame_id)
    held = item.pending_since.timestamp() if item.reason is QueueReason.PENDING_ALERT else 0.0
    return (_SECTION_RANK[item.reason], held, t, item.frame_id)


@dataclass(frozen=True)
class _QueueSite:
    site: Site
    model_threshold: float  # the rollout model's: the audit's score bands
    thresholds: Thresholds
    camera_ids: tuple[int, ...]


def _sites(session: Session, reviewer: Actor, site: str | None) -> tuple[list[_QueueSite], int | None]:
    """Each site with a queue (a rollout model and cameras), or the one named, and the
    reviewer's user id (None: not a registered user), in one query."""
    user_id = sa.select(User.id).where(User.name == reviewer.name).scalar_subquery()
    # the cameras' ids aggregated per site: a row per camera would load the Site entity
    # once per camera (70 ms for 1,000 cameras)
    postgresql = session.get_bind().dialect.name == "postgresql"
    camera_ids = sa.func.array_agg(Camera.id) if postgresql else sa.func.group_concat(Camera.id)
    rows = session.execute(
        sa.select(Site, ModelVersion.threshold, camera_ids, user_id)
        .join(ModelVersion, ModelVersion.id == Site.rollout_model_id)
        .join(Camera, Camera.site_id == Site.id)
        .where(Site.name == site if site else sa.true())
        .group_by(Site.id, ModelVersion.threshold)
        .order_by(Site.name)
    ).all()

    def ids(value: Any) -> tuple[int, ...]:
        return tuple(sorted(int(i) for i in (value if postgresql else str(value).split(","))))

    sites = [_QueueSite(s, threshold, thresholds_of(s), ids(cameras)) for s, threshold, cameras, _ in rows]
    return sites, (rows[0][3] if rows else None)


def _undecided(user_id: int | None, frame_id: Any = Frame.id) -> sa.ColumnElement[bool]:
    """SQL: the reviewer (None: not a registered user) has no verdict on the frame ``frame_id``."""
    if user_id is None:
        return sa.true()
    return ~sa.select(Decision.id).where(Decision.frame_id == frame_id, Decision.reviewer_id == user_id).exists()


def _queue_item(
    qs: _QueueSite, now: datetime, frame: Frame, camera: str, pred: Prediction | None, reason: QueueReason,
    alert: Alert | None, *, processed: bool,
) -> QueueItem:
    """One frame of the queue with what confirming it does, its audit stratum and its
    inclusion probability; ``processed``: whether the alert processor has seen its flag."""
    site, t = qs.site, qs.thresholds
    flagged = pred is not None and pred.flagged
    status = alert.status if alert is not None else None
    if pred is not None and not pred.flagged:
        stratum = audit_design.stratum_of(pred.positive_score, frame.is_night, False, qs.model_threshold, t)
        stratum_name, prob = stratum.value, audit_design.stratum_rate(stratum, t)
    else:
        stratum_name, prob = audit_design.Stratum.FLAGGED.value, 1.0
    if flagged and not processed:
        # Not yet processed: say what the processor will do with it.
        in_scope = alert_rules.in_trial_scope(site.trial_scope, site.trial_start, site.trial_end, frame.camera_id, frame.captured_at)
        status = alert_rules.flag_alert_status(site.stage, in_scope)
    late = alert_rules.age_text(frame.captured_at, now) if alert_rules.is_late(frame.captured_at, now) else None
    held_alert = alert if reason is QueueReason.PENDING_ALERT else None
    return QueueItem(
        frame_id=frame.id, path=frame.path, camera_id=frame.camera_id, camera=camera, site=site.name,
        captured_at=frame.captured_at, model_label=_top_label(pred.probabilities) if pred else None,
        model_score=pred.positive_score if pred else None, stage=site.stage, reason=reason,
        on_confirm=alert_rules.confirm_text(flagged, status, late, t.late_alerts),
        pending_since=alert.created_at if reason is QueueReason.PENDING_ALERT and alert else frame.captured_at,
        alert_id=alert.id if alert else None, stratum=stratum_name, inclusion_prob=prob, flagged=flagged,
        escalates_at=escalates_at(held_alert, site) if held_alert is not None else None,
        escalated_at=held_alert.escalated_at if held_alert is not None else None,
    )


def _union(selects: list[sa.Select], *, distinct: bool = False) -> sa.CompoundSelect:
    make = sa.union if distinct else sa.union_all
    while len(selects) > _UNION_PARTS:
        selects = [sa.select(make(*selects[i:i + _UNION_PARTS]).subquery())
                   for i in range(0, len(selects), _UNION_PARTS)]
    return make(*selects)


@dataclass(frozen=True)
class _Branch:
    """One section's query, of one site (``qs``) or of several at once (``qs`` None:
    ``page`` is already bounded by the page size, ``count`` reads the section's frames)."""

    qs: _QueueSite | None
    reason: QueueReason
    page: sa.Select
    count: sa.Select
    ids: sa.Select | None = None  # the count's frame ids (column "id"), where not ``count``'s Frame.id


def _branches(
    session: Session, sites: list[_QueueSite], user_id: int | None, since: datetime, limit: int, *, indexed: bool,
) -> list[_Branch]:
    """Every section of every site. ``indexed`` (PostgreSQL): the flagged frames of all
    sites, and the audit sample of the sites whose rates the audit index covers, are each
    one branch reading the partial indexes of migration 0016 (``_indexed_flagged``,
    ``_indexed_audit``), a page's worth of rows whatever the window holds."""
    audit_indexed = [qs for qs in sites if _audit_in_index(qs.thresholds)] if indexed else []
    # The lowest frame id the sections' windows can reach (a follow-up's neighbours reach
    # back two cooldowns), which keeps older partitions out of the plan (bearwatch.partitions).
    floor = frame_id_floor(session, since - 2 * _widest_cooldown(sites))
    branches = []
    for qs in sites:
        skip = {QueueReason.PENDING_ALERT, QueueReason.FLAGGED, QueueReason.SECOND_LOOK, QueueReason.FOLLOW_UP} \
            if indexed else set()
        if qs in audit_indexed:
            continue  # every section of it is in a branch of all sites (building its statements costs ~7 ms)
        branches += [_Branch(qs, reason, stmt, stmt) for reason, stmt in
                     _section_statements(session, qs, user_id, since, floor).items() if reason not in skip]
    if indexed:
        branches.append(_held_alerts(sites, user_id, limit))
        branches.append(_indexed_flagged(sites, user_id, since, floor, limit * _PAGES[QueueReason.FLAGGED]))
        branches.append(_second_looks(sites, user_id, since, floor))
        branches.append(_follow_ups(sites, since, floor))
    if audit_indexed:
        branches.append(_indexed_audit(audit_indexed, user_id, since, floor))
    return branches


def _first_frames(branches: list[_Branch], now: datetime, limit: int, *, per_camera: bool) -> sa.Subquery:
    """The first ``limit`` frames of the queue (frame id, section, prediction, alert and
    flag ids): a page of each section of each site, read as the site's own query would,
    each frame in its first section, in queue order. ``per_camera`` (PostgreSQL): a site's
    sections read in capture-time order page per camera, each from its camera's
    (camera_id, captured_at) index; given the site's cameras at once PostgreSQL walks
    every site's window by captured_at instead. SQLite walks that index by itself."""
    pages = [_section_page(b.qs, b.reason, b.page, limit * _PAGES.get(b.reason, 1), per_camera=per_camera)
             for b in branches]
    candidates = _union(pages).subquery("candidates")
    nth = sa.func.row_number().over(partition_by=candidates.c.frame_id, order_by=candidates.c.section)
    claimed = sa.select(candidates, nth.label("nth")).subquery("claimed")
    return (
        sa.select(claimed).where(claimed.c.nth == 1).order_by(*_queue_order(claimed, now)).limit(limit).subquery("top")
    )


def _section_page(
    qs: _QueueSite | None, reason: QueueReason, stmt: sa.Select, size: int, *, per_camera: bool,
) -> sa.Select:
    """The first ``size`` rows of a site's section, as a member of a union (SQLite takes a
    member's ORDER BY and LIMIT only inside a subquery); ``per_camera``: a section in
    capture-time order from the first ``size`` of each camera (LATERAL)."""
    if qs is None or not (per_camera and reason in _TIME_ORDERED):
        return sa.select(*_ROW_COLUMNS).select_from(stmt.limit(size).subquery())
    camera = _cameras(qs.camera_ids)
    of_camera = stmt.where(Frame.camera_id == camera.c.id).limit(size).lateral("of_camera")
    at: sa.ColumnClause[datetime] = sa.literal_column("captured_at")
    return (
        sa.select(*_ROW_COLUMNS).select_from(camera).join(of_camera, sa.true())
        .order_by(at.desc() if reason is QueueReason.FLAGGED else at).limit(size)
    )


def _queue_order(frames: sa.Subquery, now: datetime) -> tuple[sa.ColumnElement[object], ...]:
    """``_rank`` in SQL over rows with a section, a held_since and a captured_at."""
    section, at = frames.c.section, frames.c.captured_at
    flagged = section == _SECTIONS.index(QueueReason.FLAGGED)
    rank = sa.case(
        (flagged, sa.case((at >= now - FRESH_FLAG, _FRESH_RANK), else_=_OLDER_FLAG_RANK)),
        *((section == _SECTIONS.index(reason), r) for reason, r in _SECTION_RANK.items()),
    )
    return rank, frames.c.held_since, sa.case((flagged, at)).desc(), at, frames.c.frame_id


def _queue_size(branches: list[_Branch], cap: int, *, per_camera: bool) -> sa.ScalarSelect[int]:
    """SQL: how many frames the sections hold, a frame once (a site's sections share
    frames; sites do not), up to ``cap`` + 1: each branch reads at most that many frame
    ids, so past the cap the count's work does not grow with the window (a branch that
    has more is cut there, and then so is the union). A branch of all sites keeps its
    order, so it walks its partial index in that order and stops at the cap (unordered,
    PostgreSQL may loop over the cameras and read each one's window of the index); a
    site's own branch reads its cameras' index ranges in any order. ``per_camera``: as
    in ``_first_frames``."""
    def frame_ids(b: _Branch) -> sa.Select:
        ids = b.ids if b.ids is not None else b.count.with_only_columns(Frame.id)
        if b.qs is not None:
            ids = ids.order_by(None)
            if per_camera and b.reason in _TIME_ORDERED:
                ids = ids.where(Frame.camera_id == _cameras(b.qs.camera_ids).c.id)
        # a member's LIMIT inside a subquery: SQLite refuses it on a compound's member
        return sa.select(sa.literal_column("id", sa.BigInteger)).select_from(ids.limit(cap + 1).subquery())

    ids = _union([frame_ids(b) for b in branches], distinct=True).subquery()
    at_most = sa.select(ids).limit(cap + 1).subquery()
    return sa.select(sa.func.count()).select_from(at_most).scalar_subquery()


def _cameras(camera_ids: tuple[int, ...]) -> sa.TableValuedAlias:
    """PostgreSQL: the cameras as rows (an array parameter, so the statement stays cacheable)."""
    return sa.func.unnest(sa.literal(list(camera_ids), sa.ARRAY(sa.Integer))).table_valued("id").render_derived(name="camera")


# A flag is scored after its frame was captured; the clocks of the ingest and inference
# machines may differ by this much at most (the flags read by scoring time allow for it).
CLOCK_SLACK = timedelta(minutes=10)
# The partial index's predicate, stated as the index states it so that PostgreSQL sees the
# query is within it (bearwatch.schema.AUDIT_INDEX_PREDICATE, written out on frames).
_AUDIT_INDEX_THRESHOLD = audit_threshold(AUDIT_INDEX_RATE)
assert AUDIT_INDEX_PREDICATE == f"(id * {HASH_MULTIPLIER}) % {HASH_MODULUS} < {_AUDIT_INDEX_THRESHOLD}"
_IN_AUDIT_INDEX = sa.literal_column(f"(frames.id * {HASH_MULTIPLIER}) % {HASH_MODULUS}", sa.BigInteger) < sa.literal_column(
    str(_AUDIT_INDEX_THRESHOLD), sa.BigInteger)
# and ix_predictions_audit_frame_id's (bearwatch.schema.AUDIT_PREDICTION_PREDICATE)
_IN_AUDIT_PREDICTIONS = sa.and_(
    sa.literal_column("NOT predictions.flagged", sa.Boolean),
    sa.literal_column(f"(predictions.frame_id * {HASH_MULTIPLIER}) % {HASH_MODULUS}", sa.BigInteger)
    < sa.literal_column(str(_AUDIT_INDEX_THRESHOLD), sa.BigInteger),
)
assert AUDIT_PREDICTION_PREDICATE == f"NOT flagged AND (frame_id * {HASH_MULTIPLIER}) % {HASH_MODULUS} < {_AUDIT_INDEX_THRESHOLD}"
# ix_decisions_missed_decided_at's predicate, as a literal: both databases prove a partial
# index from literals, not from bound parameters.
_IS_MISSED = Decision.verdict == sa.literal_column(f"'{Verdict.MISSED.value}'", Decision.verdict.type)
_NO_NEAR = 1e300  # a score no frame reaches: the site has no near stratum


def _audit_in_index(t: Thresholds) -> bool:
    """Whether the site has an audit and every stratum rate of it is within the audit index's."""
    return 0 < max(t.audit_rate, audit_design.night_rate(t), t.audit_near_rate) <= AUDIT_INDEX_RATE


def _of_sites(sites: list[_QueueSite], camera_id: Any = Frame.camera_id) -> sa.ColumnElement[bool]:
    """SQL: ``camera_id`` is one of ``sites``' cameras (an array parameter: the statement
    stays cacheable whatever the cameras). PostgreSQL estimates ``= ANY(array)`` element
    by element, for every partition and index it plans a scan of: a branch that reads
    many partitions by another index takes the sites instead (``_of_site_ids``)."""
    ids = [camera for qs in sites for camera in qs.camera_ids]
    return camera_id == sa.any_(sa.literal(ids, sa.ARRAY(sa.Integer)))


def _of_site_ids(sites: list[_QueueSite]) -> sa.ColumnElement[bool]:
    """SQL: the joined camera is one of ``sites``' (an array of sites). The flagged branch
    reads every partition's flags by scoring time: ``_of_sites``' list of 1,000 cameras
    cost it 19 ms of planning at the season bench's 10M on partitioned tables (5.9 ms
    with this), 4.9 at 1M on plain ones (2.1). The audit and follow-up branches keep the
    cameras' list: given only the sites, PostgreSQL read a window's audit sample once
    per camera in a small park (tests/shadow/test_review_queue_scale.py)."""
    return Camera.site_id == sa.any_(_site_ids(sites))


def _site_ids(sites: list[_QueueSite]) -> sa.BindParameter[list[int]]:
    """The sites' ids as an array parameter (the statement stays cacheable whatever the sites)."""
    return sa.literal([qs.site.id for qs in sites], sa.ARRAY(sa.Integer))


def _per_site(sites: list[_QueueSite], value: Any, type_: sa.types.TypeEngine[Any]) -> sa.ColumnElement[Any]:
    """SQL: ``value(site)`` of the frame's site (the joined camera's): a constant when the
    sites agree, as they do with the same thresholds."""
    values = {qs.site.id: value(qs) for qs in sites}
    if len(set(values.values())) == 1:
        return sa.literal(next(iter(values.values())), type_)
    return sa.case({site_id: sa.literal(v, type_) for site_id, v in values.items()}, value=Camera.site_id)


def _indexed_flagged(sites: list[_QueueSite], user_id: int | None, since: datetime, floor: int | None, size: int) -> _Branch:
    """PostgreSQL: the flagged section of all ``sites`` at once, the newest ``size`` by
    capture time, read through ix_predictions_flagged_scored_at. The newest ``size`` by
    scoring time are read first; the oldest capture time among them bounds the page from
    below (whatever ``size`` flags one takes, the page's last is no older), and a flag
    captured after that bound was scored after it (less CLOCK_SLACK): so the page is read
    from the flags scored since, about ``size`` of them, never the whole window."""
    model = _per_site(sites, lambda qs: qs.site.rollout_model_id, sa.Integer())

    def flags(*where: sa.ColumnElement[bool]) -> sa.Select:
        return (
            sa.select(*_row(QueueReason.FLAGGED, Prediction.id, AlertFlag.alert_id, AlertFlag.id))
            .select_from(Prediction)
            .join(Frame, Frame.id == Prediction.frame_id)
            .join(Camera, Camera.id == Frame.camera_id)
            .outerjoin(AlertFlag, AlertFlag.prediction_id == Prediction.id)
            .where(Prediction.flagged == sa.true(), Prediction.model_version_id == model, _of_site_ids(sites),
                   Frame.captured_at >= since, _undecided(user_id), *at_least(floor, Frame.id, Prediction.frame_id),
                   *where)
        )

    newest_scored = flags().order_by(Prediction.scored_at.desc()).limit(size).subquery("newest_scored")
    bound = sa.select(sa.func.min(newest_scored.c.captured_at)).scalar_subquery()
    page = (flags(Prediction.scored_at >= bound - sa.literal(CLOCK_SLACK, sa.Interval()), Frame.captured_at >= bound)
            .order_by(Frame.captured_at.desc()).limit(size))
    counted = flags(Prediction.scored_at >= since - CLOCK_SLACK).order_by(Prediction.scored_at.desc())
    return _Branch(None, QueueReason.FLAGGED, page, counted)


def _held_frames(alerts: sa.FromClause, user_id: int | None, *, after: sa.FromClause | None = None) -> sa.Select:
    """Every flagged frame that joined the held ``alerts`` (rows with an ``id`` and a
    ``created_at``; a LATERAL on ``after``) that the reviewer has not decided, the longest
    held first, each alert's frames oldest first (the columns of ``_row``)."""
    start = sa.select(*_row(QueueReason.PENDING_ALERT, AlertFlag.prediction_id, alerts.c.id, AlertFlag.id,
                            held_since=alerts.c.created_at))
    joined = start.select_from(after).join(alerts, sa.true()) if after is not None else start.select_from(alerts)
    return (
        joined.join(AlertFlag, AlertFlag.alert_id == alerts.c.id)
        .join(Frame, Frame.id == AlertFlag.frame_id)
        .where(_undecided(user_id))
        .order_by(alerts.c.created_at, Frame.captured_at)
    )


def _held_alerts_of(of_sites: sa.ColumnElement[bool], user_id: int | None) -> sa.Select:
    """Held alerts (``of_sites``: a condition on Alert.site_id) and their frames
    (``_held_frames``), through ix_alerts' (site, status, created_at) key."""
    held = sa.select(Alert.id, Alert.created_at).where(of_sites, Alert.status == AlertStatus.PENDING).subquery("held")
    return _held_frames(held, user_id)


def _held_alerts(sites: list[_QueueSite], user_id: int | None, size: int) -> _Branch:
    """PostgreSQL: the held alerts of all ``sites`` at once. The page takes each site's
    ``size`` longest held with a frame left to decide, walking its own range of the (site,
    status, created_at) key (a LATERAL per site), then their frames: given the sites at
    once, or the frames before the alerts are cut, PostgreSQL reads and sorts every held
    alert (2,137 frames at the season bench's 10M). The count reads them unordered up to
    its cap."""
    site_ids = _site_ids(sites)
    site = sa.func.unnest(site_ids).table_valued("id").render_derived(name="held_site")
    flag = sa.orm.aliased(AlertFlag, name="held_flag")
    # by the flag's frame id, not a join to frames (each reference to frames is planned
    # over every partition of the partitioned layout)
    undecided = sa.select(flag.id).where(flag.alert_id == Alert.id, _undecided(user_id, flag.frame_id))
    longest = (sa.select(Alert.id, Alert.created_at)
               .where(Alert.site_id == site.c.id, Alert.status == AlertStatus.PENDING, undecided.exists())
               .order_by(Alert.created_at).limit(size).lateral("held"))
    page = _held_frames(longest, user_id, after=site).limit(size)
    counted = _held_alerts_of(Alert.site_id == sa.any_(site_ids), user_id).order_by(None)
    return _Branch(None, QueueReason.PENDING_ALERT, page, counted)


def _widest_cooldown(sites: list[_QueueSite]) -> timedelta:
    return timedelta(seconds=max(qs.thresholds.alert_cooldown_s for qs in sites))


def _follow_ups(sites: list[_QueueSite], since: datetime, floor: int | None) -> _Branch:
    """PostgreSQL: the follow-ups of all ``sites`` at once (``_section_statements``' rule,
    each site with its own cooldown and its newest ``follow_up.MAX_ANCHORS`` found misses),
    found miss by found miss, the oldest first, each one's neighbours in capture order:
    the page and the count stop after the rows they need (a nested loop under their
    LIMIT), never reading every neighbour of every miss (48k frames, 1.4 s at the season
    bench's 10M). Each miss's span starts after the one before it on its camera ends, so
    a frame comes once. Which follow-ups fill a page when there are more than a page:
    those of the oldest misses (SQLite's per-site query: the oldest frames)."""
    anchor, neighbour = _ANCHOR, _NEIGHBOUR
    reach = _per_site(sites, lambda qs: timedelta(seconds=qs.thresholds.alert_cooldown_s), sa.Interval())
    model = _per_site(sites, lambda qs: qs.site.rollout_model_id, sa.Integer())
    widest = _widest_cooldown(sites)
    misses = (
        sa.select(anchor.camera_id, anchor.captured_at, Camera.site_id, reach.label("reach"), model.label("model_id"))
        .distinct()
        .select_from(Decision)
        .join(anchor, anchor.id == Decision.frame_id)
        .join(Camera, Camera.id == anchor.camera_id)
        .where(_of_sites(sites, anchor.camera_id), anchor.captured_at >= since - reach,
               _IS_MISSED, Decision.review_reason.in_(follow_up.FOUND_BY_DESIGN),
               # read through ix_decisions_missed_decided_at: a miss is reported after its capture
               Decision.decided_at >= since - widest - CLOCK_SLACK, *at_least(floor, anchor.id))
        .subquery("misses")
    )
    newest = sa.func.row_number().over(partition_by=misses.c.site_id, order_by=misses.c.captured_at.desc())
    ranked = sa.select(misses, newest.label("nth")).subquery("ranked")
    found = sa.select(ranked).where(ranked.c.nth <= follow_up.MAX_ANCHORS).subquery("found")
    f = found.c
    before = sa.func.lag(f.captured_at + f.reach).over(partition_by=f.camera_id, order_by=f.captured_at)
    spans = (sa.select(f.camera_id, f.captured_at, f.reach, f.model_id, before.label("after"))
             .order_by(f.captured_at, f.camera_id).subquery("spans"))
    s = spans.c
    nobody_decided = ~sa.select(Decision.id).where(Decision.frame_id == neighbour.id).exists()
    near = (
        sa.select(neighbour.id.label("frame_id"), neighbour.captured_at.label("captured_at"),
                  Prediction.id.label("prediction_id"))
        .join(Prediction, sa.and_(Prediction.frame_id == neighbour.id, Prediction.model_version_id == s.model_id))
        .where(neighbour.camera_id == s.camera_id, neighbour.captured_at >= s.captured_at - s.reach,
               neighbour.captured_at <= s.captured_at + s.reach,
               sa.or_(s.after.is_(None), neighbour.captured_at > s.after),
               neighbour.captured_at >= since - 2 * widest, Prediction.flagged.is_(False), nobody_decided,
               *at_least(floor, neighbour.id, Prediction.frame_id))
        .order_by(neighbour.captured_at)
        .lateral("near")
    )
    stmt = sa.select(
        near.c.frame_id, near.c.captured_at,
        sa.literal_column(str(_SECTIONS.index(QueueReason.FOLLOW_UP)), sa.Integer).label("section"),
        near.c.prediction_id, sa.cast(sa.null(), sa.BigInteger).label("alert_id"),
        sa.cast(sa.null(), sa.BigInteger).label("flag_id"), sa.cast(sa.null(), UTCDateTime()).label("held_since"),
    ).select_from(spans).join(near, sa.true())
    return _Branch(None, QueueReason.FOLLOW_UP, stmt, stmt, ids=stmt.with_only_columns(near.c.frame_id.label("id")))


def _second_looks(sites: list[_QueueSite], user_id: int | None, since: datetime, floor: int | None) -> _Branch:
    """PostgreSQL: the second looks of all ``sites`` at once (``_section_statements``' for
    one site), read from the vote summary's partial index (shadow.second_looks): the
    frames that may need another look, never the window's settled verdicts."""
    model = _per_site(sites, lambda qs: qs.site.rollout_model_id, sa.Integer())
    stmt = (
        sa.select(*_row(QueueReason.SECOND_LOOK, Prediction.id, AlertFlag.alert_id, AlertFlag.id))
        .select_from(FrameVotes)
        .join(Frame, Frame.id == FrameVotes.frame_id)
        .join(Camera, Camera.id == Frame.camera_id)
        .join(Prediction, sa.and_(Prediction.frame_id == Frame.id, Prediction.model_version_id == model))
        .outerjoin(AlertFlag, AlertFlag.prediction_id == Prediction.id)
        .where(*second_look_frames(since, Prediction.flagged),
               _of_sites(sites, FrameVotes.camera_id), _undecided(user_id),
               *at_least(floor, Frame.id, Prediction.frame_id))
        .order_by(FrameVotes.captured_at)
    )
    return _Branch(None, QueueReason.SECOND_LOOK, stmt, stmt)


def _indexed_audit(sites: list[_QueueSite], user_id: int | None, since: datetime, floor: int | None) -> _Branch:
    """PostgreSQL: the audit sample of all ``sites`` at once (each with its own rates, all
    within the audit index's), oldest first, read through ix_frames_audit_captured_at:
    only frames whose id hash may put them in a sample."""
    def near_from(qs: _QueueSite) -> float:
        t = qs.thresholds
        return t.audit_near_from * qs.model_threshold if t.audit_near_rate > 0 else _NO_NEAR

    big = sa.BigInteger()
    below = sa.case(
        (Prediction.positive_score >= _per_site(sites, near_from, sa.Float()),
         _per_site(sites, lambda qs: audit_threshold(qs.thresholds.audit_near_rate), big)),
        (Frame.is_night.is_(True), _per_site(sites, lambda qs: audit_threshold(audit_design.night_rate(qs.thresholds)), big)),
        else_=_per_site(sites, lambda qs: audit_threshold(qs.thresholds.audit_rate), big),
    )
    model = _per_site(sites, lambda qs: qs.site.rollout_model_id, sa.Integer())
    stmt = (
        sa.select(*_row(QueueReason.AUDIT, Prediction.id))
        .select_from(Frame)
        .join(Camera, Camera.id == Frame.camera_id)
        .join(Prediction, sa.and_(Prediction.frame_id == Frame.id, Prediction.model_version_id == model))
        .where(_IN_AUDIT_INDEX, _IN_AUDIT_PREDICTIONS, _of_sites(sites), Frame.captured_at >= since,
               audit_design.id_hash_sql(Frame.id) < below, _undecided(user_id), *at_least(floor, Frame.id, Prediction.frame_id))
        .order_by(Frame.captured_at)
    )
    return _Branch(None, QueueReason.AUDIT, stmt, stmt)


_IdColumn = sa.orm.InstrumentedAttribute[int] | sa.orm.InstrumentedAttribute[int | None] | sa.ColumnElement[Any]


def _row(
    reason: QueueReason, prediction_id: _IdColumn | None = None, alert_id: _IdColumn | None = None,
    flag_id: _IdColumn | None = None, *, held_since: sa.ColumnElement[datetime] | None = None,
) -> tuple[sa.ColumnElement[Any], ...]:
    """The columns every section's query selects (``_ROW_COLUMNS``: a union needs one shape);
    a held alert's frames carry when the alert was made (``held_since``: longest held first)."""
    def id_or_null(column: _IdColumn | None, name: str) -> sa.ColumnElement[Any]:
        return (sa.cast(sa.null(), sa.BigInteger) if column is None else column).label(name)

    return (
        Frame.id.label("frame_id"), Frame.captured_at.label("captured_at"),
        sa.literal_column(str(_SECTIONS.index(reason)), sa.Integer).label("section"),
        id_or_null(prediction_id, "prediction_id"), id_or_null(alert_id, "alert_id"), id_or_null(flag_id, "flag_id"),
        (sa.cast(sa.null(), UTCDateTime()) if held_since is None else held_since).label("held_since"),
    )


_ROW_COLUMNS = tuple(sa.literal_column(name, type_) for name, type_ in (
    ("frame_id", sa.BigInteger()), ("captured_at", UTCDateTime()), ("section", sa.Integer()),
    ("prediction_id", sa.BigInteger()), ("alert_id", sa.BigInteger()), ("flag_id", sa.BigInteger()),
    ("held_since", UTCDateTime()),
))


def _shifted(session: Session, at: sa.ColumnElement[datetime], seconds: float) -> sa.ColumnElement[datetime]:
    """SQL: the timestamp ``at`` moved by ``seconds``, to the microsecond."""
    if session.get_bind().dialect.name != "sqlite":
        return at + sa.literal(timedelta(seconds=seconds), sa.Interval())
    # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' text and datetime() rounds to milliseconds:
    # the whole seconds move through datetime(), the microseconds by hand with their carry.
    whole, micros = divmod(round(seconds * 1_000_000), 1_000_000)
    total = sa.cast(sa.func.substr(at, 21, 6), sa.Integer) + micros
    carry = sa.case((total >= 1_000_000, 1), else_=0)
    moved = sa.func.datetime(sa.func.substr(at, 1, 19), sa.func.printf("%d seconds", whole + carry))
    return sa.func.printf("%s.%06d", moved, total - carry * 1_000_000)


def _section_statements(
    session: Session, qs: _QueueSite, user_id: int | None, since: datetime, floor: int | None,
) -> dict[QueueReason, sa.Select]:
    """Each section's query for one site (the columns of ``_row``), ordered, without a
    limit: the caller pages them and may count them all. ``floor``: no frame of the
    windows has a lower id (bearwatch.partitions.frame_id_floor)."""
    site, t = qs.site, qs.thresholds
    # The site's cameras by id, not through a join on cameras: then PostgreSQL reads the
    # window through the (camera_id, captured_at) index, only this site's frames, instead
    # of every site's frames in the window by captured_at (4x faster at 20 sites).
    of_site = Frame.camera_id.in_(qs.camera_ids)
    stmts: dict[QueueReason, sa.Select] = {}
    pred_join = sa.and_(Prediction.frame_id == Frame.id, Prediction.model_version_id == site.rollout_model_id)
    # 1. Held alerts and every flagged frame that joined them, longest held first.
    stmts[QueueReason.PENDING_ALERT] = _held_alerts_of(Alert.site_id == site.id, user_id)
    # 2. Second looks (shadow.truth.needs_another_look in SQL: shadow.second_looks): a lone
    # verdict against the model (a dismissed flag, a bear on an unflagged frame) or two
    # rangers who disagree, read from the vote summary's partial index.
    stmts[QueueReason.SECOND_LOOK] = (
        sa.select(*_row(QueueReason.SECOND_LOOK, Prediction.id, AlertFlag.alert_id, AlertFlag.id))
        .select_from(FrameVotes)
        .join(Frame, Frame.id == FrameVotes.frame_id)
        # the model by an expression: SQLite then reads the few frames of the summary's
        # index first, not every prediction of the model by ix_predictions_model_version_id_flagged
        .join(Prediction, sa.and_(Prediction.frame_id == Frame.id,
                                  sa.func.coalesce(Prediction.model_version_id, Prediction.model_version_id) == site.rollout_model_id))
        .outerjoin(AlertFlag, AlertFlag.prediction_id == Prediction.id)
        .where(*second_look_frames(since, Prediction.flagged), FrameVotes.camera_id.in_(qs.camera_ids),
               _undecided(user_id), *at_least(floor, Frame.id, Prediction.frame_id))
        .order_by(FrameVotes.captured_at)
    )
    # 3. Flagged frames in the window, newest first: a bear may still be there.
    stmts[QueueReason.FLAGGED] = (
        sa.select(*_row(QueueReason.FLAGGED, Prediction.id, AlertFlag.alert_id, AlertFlag.id))
        .select_from(Prediction)
        .join(Frame, Frame.id == Prediction.frame_id)
        .outerjoin(AlertFlag, AlertFlag.prediction_id == Prediction.id)
        .where(
            Prediction.model_version_id == site.rollout_model_id, Prediction.flagged.is_(True),
            of_site, Frame.captured_at >= since, _undecided(user_id), *at_least(floor, Frame.id, Prediction.frame_id),
        )
        .order_by(Frame.captured_at.desc())
    )
    # 4. The audit sample of frames the model scored and did not flag: each frame's id
    # hash below its stratum's rate.
    if max(t.audit_rate, audit_design.night_rate(t), t.audit_near_rate) > 0:
        stratum_threshold = audit_design.audit_rate_sql(Prediction.positive_score, Frame.is_night, qs.model_threshold, t)
        stmts[QueueReason.AUDIT] = (
            sa.select(*_row(QueueReason.AUDIT, Prediction.id))
            .select_from(Frame)
            .join(Prediction, pred_join)
            .where(
                of_site, Frame.captured_at >= since, Prediction.flagged.is_(False),
                audit_design.id_hash_sql(Frame.id) < stratum_threshold,
                _undecided(user_id), *at_least(floor, Frame.id, Prediction.frame_id),
            )
            .order_by(Frame.captured_at)
        )
    # 5. Follow-up: unflagged frames nobody decided yet within the cooldown of a bear the
    # audit found (the rule of follow_up.is_follow_up, for a page of frames), around the newest found.
    reach = t.alert_cooldown_s
    anchor, neighbour = _ANCHOR, _NEIGHBOUR
    newest: sa.ColumnElement[datetime] = anchor.captured_at.expression
    if session.get_bind().dialect.name == "sqlite":
        # Ordered by the column, SQLite walks every site's window by ix_frames_captured_at;
        # by an expression, the site's cameras' ranges of (camera_id, captured_at).
        newest = sa.func.coalesce(anchor.captured_at, anchor.captured_at)
    found = (
        sa.select(anchor.camera_id, anchor.captured_at).distinct()
        .join(Decision, Decision.frame_id == anchor.id)
        .where(anchor.camera_id.in_(qs.camera_ids), anchor.captured_at >= since - timedelta(seconds=reach),
               _IS_MISSED, Decision.review_reason.in_(follow_up.FOUND_BY_DESIGN),
               # a miss is reported after its frame was captured: the window's misses are read
               # through ix_decisions_missed_decided_at, not every verdict of the window
               Decision.decided_at >= since - timedelta(seconds=reach) - CLOCK_SLACK)
        .order_by(newest.desc())
        .limit(follow_up.MAX_ANCHORS)
        .cte(f"found_{site.id}")  # read once for the page and the count
    )
    # Read from the found misses (nothing when there are none), a frame once: as a derived
    # table that the planner cannot fold into a semi-join, and ordered by its own capture
    # time, the frames are read from it by id, not the site's whole window walked in
    # time order and tested against it (every frame of the window, on PostgreSQL).
    near_found = (
        sa.select(neighbour.id, neighbour.captured_at)
        .distinct()
        .select_from(found)
        .join(neighbour, sa.and_(
            neighbour.camera_id == found.c.camera_id,
            neighbour.captured_at >= _shifted(session, found.c.captured_at, -reach),
            neighbour.captured_at <= _shifted(session, found.c.captured_at, reach),
        ))
        .subquery(f"near_found_{site.id}")
    )
    nobody_decided = ~sa.select(Decision.id).where(Decision.frame_id == Frame.id).exists()
    stmts[QueueReason.FOLLOW_UP] = (
        sa.select(*_row(QueueReason.FOLLOW_UP, Prediction.id))
        .select_from(near_found)
        .join(Frame, Frame.id == near_found.c.id)
        .join(Prediction, pred_join)
        # the window widened by the cooldown is implied by near_found; it keeps a planner
        # that reads frames first in the window, never in the site's whole history
        .where(of_site, Frame.captured_at >= since - timedelta(seconds=2 * reach),
               Prediction.flagged.is_(False), nobody_decided)
        .order_by(near_found.c.captured_at)
    )
    return stmts
