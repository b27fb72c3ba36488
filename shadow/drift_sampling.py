"""The drift sample's statements: each window's counts and its sampled frames, read whole
(:func:`sample_query`) or by clock hour (:func:`candidate_query`, with the frozen
streams across hours, :func:`repeats_query`). shadow.drift_windows runs them, merges
the hours and keeps what it read; shadow.embedding_retention thins embeddings by the
same seeded hash (:func:`sample_rank`), so what it keeps is what drift samples.

The sample is the first frames in the order of a seeded hash of the frame id (integer
arithmetic both databases compute alike), taken per day/night stratum in proportion to
the window's frames, so the sample keeps the window's night share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import QueryableAttribute, Session, aliased

from bearwatch.partitions import at_least, frame_id_floor
from bearwatch.schema import Camera, CameraHealth, Frame, FrameStatus, Prediction, Site
from shadow.periods import hour_bucket, usable_frame

OOD_THRESHOLD = 1.0  # inference.ood: 1.0 is as far as the farthest 1% of the reference
HOUR = timedelta(hours=1)
# The counts of a stratum candidate_query reads with its frames (a piece keeps them: drift_windows).
COUNTS = ("n_stratum", "brightness_known", "scored", "flagged_n", "ood_known_n", "ood_over_n")


@dataclass(frozen=True)
class WindowSpec:
    """One window to read: the usable frames of the site's streaming cameras in
    [start, end) with the model's predictions."""

    site_id: int
    model_id: int | None
    start: datetime
    end: datetime
    seed: int  # the sample's: the same seed on the same data reads the same frames
    closed: bool = False  # it ended and its frames no longer change: read once, then cached
    hourly: bool = False  # the current window: read by clock hour, closed hours kept (drift_windows' module doc)


def sample_seed(site: Site) -> int:
    """A site's sample seed: fixed, so consecutive checks share most of their sample and
    a chart of the statistics does not jitter from one sample to the next."""
    return site.id


def sample_seed_sql(site_id: sa.ColumnElement[int] | QueryableAttribute[int]) -> sa.ColumnElement[int]:
    """SQL: ``sample_seed`` of the site with that id."""
    return sa.cast(site_id, sa.BigInteger)


_PRIME = 2_147_483_647  # 2^31 - 1
RANK_RANGE = 2**31  # sample_rank's values lie in [0, RANK_RANGE)


def _const(value: int) -> sa.ColumnElement[int]:
    return sa.literal_column(str(value), sa.BigInteger)


def _xor(a: sa.ColumnElement[int], b: sa.ColumnElement[int]) -> sa.ColumnElement[int]:
    """a XOR b for non-negative integers: SQLite has no XOR operator."""
    return a.op("|", return_type=sa.BigInteger)(b) - a.op("&", return_type=sa.BigInteger)(b)


def _xorshift(x: sa.ColumnElement[int], shift: int) -> sa.ColumnElement[int]:
    return _xor(x, x.op(">>", return_type=sa.BigInteger)(_const(shift)))


def sample_rank(frame_id: sa.ColumnElement[int] | QueryableAttribute[int], seed: sa.ColumnElement[int]) -> sa.ColumnElement[int]:
    """SQL: a seeded pseudo-random rank of a frame, computed alike by SQLite and PostgreSQL
    (neither shares a hash function with the other): multiply-mod-prime and xorshift
    rounds whose intermediates stay under 2^63. The first n frames in this order are a
    uniform random sample of them (over cameras and time alike)."""
    x = ((sa.cast(frame_id, sa.BigInteger) % _const(_PRIME)) * _const(1_103_515_245)
         + seed * _const(69_069) + _const(12_345)) % _const(_PRIME)
    x = (_xorshift(x, 15) * _const(2_654_435_761)) % _const(_PRIME)
    x = (_xorshift(x, 13) * _const(1_597_334_677)) % _const(_PRIME)
    return _xorshift(x, 16)


def _flag(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.case((condition, 1), else_=0)


def _windows_cte(specs: Sequence[WindowSpec]) -> sa.CTE:
    at = Frame.captured_at.type
    rows = [
        sa.select(sa.literal(key, sa.Integer).label("key"), sa.literal(s.site_id, sa.Integer).label("site_id"),
                  sa.literal(s.model_id if s.model_id is not None else -1, sa.Integer).label("model_id"),
                  sa.literal(s.start, at).label("start"), sa.literal(s.end, at).label("end"),
                  sa.literal(s.seed, sa.BigInteger).label("seed"))
        for key, s in enumerate(specs)
    ]
    return (sa.union_all(*rows) if len(rows) > 1 else rows[0]).cte("drift_windows")


def window_floor(session: Session, specs: Sequence[WindowSpec]) -> int | None:
    """The frame-id floor of the windows (bearwatch.partitions.frame_id_floor of the
    earliest start), for the queries below: the partitioned layout's older partitions
    left out of their plans."""
    return frame_id_floor(session, min(s.start for s in specs)) if specs else None


def _window_frames(specs: Sequence[WindowSpec], *, per_camera: bool, floor: int | None) -> tuple[sa.CTE, Any, sa.Select[Any]]:
    """The windows, the columns of their usable frames on streaming cameras, and the
    select joining them (before any column is chosen). ``per_camera``
    (PostgreSQL): each camera's frames of a window read from its (camera_id, captured_at)
    index (LATERAL); joined by camera, PostgreSQL walked every site's frames of the span
    by captured_at for each window (27M rows for 40 windows at 1M frames, issue 13)."""
    w = _windows_cte(specs)
    streaming = sa.and_(Camera.site_id == w.c.site_id, Camera.enabled,
                        Camera.health.not_in([CameraHealth.OFFLINE, CameraHealth.DISABLED]))
    in_window = sa.and_(Frame.camera_id == Camera.id, Frame.captured_at >= w.c.start, Frame.captured_at < w.c.end,
                        *at_least(floor, Frame.id))
    if per_camera:
        source = (sa.select(Frame.id, Frame.camera_id, Frame.captured_at, Frame.sha256, Frame.brightness,
                            Frame.sharpness, Frame.is_night, Frame.status)
                  # OFFSET 0: kept a subquery, not pulled up into the join it was written to avoid
                  .where(in_window, usable_frame()).offset(0).lateral("camera_frames"))
        c: Any = source.c
        joined = sa.select().select_from(w).join(Camera, streaming).join(source, sa.true())
    else:
        c = Frame
        joined = sa.select().select_from(w).join(Camera, streaming).join(Frame, in_window).where(usable_frame())
    return w, c, joined


def _ranked(specs: Sequence[WindowSpec], *, per_camera: bool, floor: int | None) -> sa.Subquery:
    """Per window: its frames (each image once), their predictions, each frame's rank in
    its stratum among all frames and among the scored ones, and the stratum's counts."""
    w, c, joined = _window_frames(specs, per_camera=per_camera, floor=floor)
    frames = (
        joined.with_only_columns(
            w.c.key, w.c.model_id, c.id.label("frame_id"), c.brightness, c.sharpness, c.is_night,
            sa.case((c.is_night.is_(None), 2), (c.is_night.is_(True), 1), else_=0).label("stratum"),
            _flag(c.status == FrameStatus.PENDING).label("pending"),
            sample_rank(c.id, w.c.seed).label("rank"),
            # a frozen camera sends the same bytes again and again: each image counts once
            sa.func.row_number().over(partition_by=(w.c.key, c.camera_id, c.sha256),
                                      order_by=(c.captured_at, c.id)).label("copy"),
            maintain_column_froms=False,
        )
        .subquery("window_frames")
    )
    f = frames.c
    # The predictions are joined after the de-duplication, and their embeddings only to the
    # sampled rows, so no sort carries 1 KB a row. A model stores an embedding with every
    # prediction or with none (inference.runner): the embedding sample is drawn among the
    # scored frames.
    scored = Prediction.positive_score.is_not(None)
    window, part = (f.key,), (f.key, f.stratum)
    return (
        sa.select(
            f.key, f.stratum, f.frame_id, f.rank, f.brightness, f.sharpness, f.is_night, Prediction.id.label("prediction_id"),
            Prediction.positive_score, Prediction.flagged, Prediction.ood_score, _flag(scored).label("is_scored"),
            sa.func.row_number().over(partition_by=part, order_by=(f.rank, f.frame_id)).label("r_all"),
            sa.func.row_number().over(partition_by=(*part, _flag(scored)), order_by=(f.rank, f.frame_id)).label("r_scored"),
            sa.func.count().over(partition_by=window).label("n_window"),
            sa.func.count().over(partition_by=part).label("n_stratum"),
            sa.func.count(Prediction.positive_score).over(partition_by=window).label("scored_window"),
            sa.func.count(Prediction.positive_score).over(partition_by=part).label("scored"),
            sa.func.count(f.brightness).over(partition_by=part).label("brightness_known"),
            sa.func.sum(_flag(sa.and_(scored, Prediction.flagged.is_(True)))).over(partition_by=part).label("flagged_n"),
            sa.func.sum(_flag(sa.and_(scored, Prediction.ood_score.is_not(None)))).over(partition_by=part).label("ood_known_n"),
            sa.func.sum(_flag(sa.and_(scored, Prediction.ood_score > OOD_THRESHOLD))).over(partition_by=part).label("ood_over_n"),
            sa.func.sum(f.pending).over(partition_by=part).label("pending_n"),
        )
        .select_from(frames)
        .outerjoin(Prediction, sa.and_(Prediction.frame_id == f.frame_id, Prediction.model_version_id == f.model_id,
                                       *at_least(floor, Prediction.frame_id)))
        .where(f.copy == 1)
        .subquery("ranked")
    )


def sample_query(specs: Sequence[WindowSpec], sample_frames: int, sample_embeddings: int, *,
                  per_camera: bool = False, floor: int | None) -> sa.Select[Any]:
    """One statement for all ``specs``: per window and stratum (day, night, unknown) the
    counts over every frame, and the sampled frames (see the module doc)."""
    ranked = _ranked(specs, per_camera=per_camera, floor=floor)
    r = ranked.c
    # Proportional allocation: stratum s gets floor(n * share of s) of the window's n.
    in_sample = r.r_all * r.n_window <= sample_frames * r.n_stratum
    in_embedding_sample = sa.and_(r.is_scored == 1, r.r_scored * r.scored_window <= sample_embeddings * r.scored)
    chosen = aliased(Prediction)
    return (
        sa.select(
            r.key, r.stratum, r.n_stratum, r.brightness_known, r.scored, r.flagged_n, r.ood_known_n, r.ood_over_n,
            _flag(in_sample).label("in_sample"), r.brightness, r.sharpness, r.is_night, r.positive_score, r.flagged,
            r.ood_score, chosen.embedding,
        )
        .select_from(ranked)
        # (by its frame too: the one partition of predictions it lies in, on the partitioned layout)
        .outerjoin(chosen, sa.and_(chosen.id == r.prediction_id, chosen.frame_id == r.frame_id, in_embedding_sample))
        # r_all = 1: each stratum's counts come with its first frame even when its share rounds to none
        .where(sa.or_(in_sample, in_embedding_sample, r.r_all == 1))
        .order_by(r.key, r.stratum, r.r_all)
    )


def candidate_query(specs: Sequence[WindowSpec], sample_frames: int, sample_embeddings: int, *,
                     per_camera: bool, floor: int | None) -> sa.Select[Any]:
    """One statement for all pieces: per piece and stratum the counts and the frames that
    may be sampled from it (:class:`_Candidate`), without embeddings."""
    r = _ranked(specs, per_camera=per_camera, floor=floor).c
    in_all = r.r_all <= sample_frames
    in_scored = sa.and_(r.is_scored == 1, r.r_scored <= sample_embeddings)
    return (
        sa.select(r.key, *(getattr(r, name) for name in COUNTS), r.pending_n, r.stratum, r.rank, r.frame_id,
                  r.prediction_id, _flag(in_all).label("in_all"), _flag(in_scored).label("in_scored"), r.brightness,
                  r.sharpness, r.is_night, r.positive_score, r.flagged, r.ood_score)
        .where(sa.or_(in_all, in_scored, r.r_all == 1))
        .order_by(r.key, r.stratum, r.r_all)
    )


def _hour_before(session: Session, column: Any) -> sa.ColumnElement[str]:
    """SQL: hour_bucket of the clock hour before the timestamp's."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.to_char(column - sa.literal(HOUR, sa.Interval), "YYYY-MM-DD HH24")
    return sa.func.substr(sa.func.datetime(column, "-1 hour"), 1, 13)


def repeats_query(session: Session, specs: Sequence[WindowSpec], *, per_camera: bool) -> sa.Select[Any]:
    """For runs of pieces (``specs``: each run's span, from the clock hour before its first
    piece): the frames that are the first copy of their image in their clock hour and
    whose copy before is in the hour before (a frozen stream across the hour), with what
    each adds to its piece's counts. Reads each frame once, without its prediction."""
    floor = window_floor(session, specs)
    w, c, joined = _window_frames(specs, per_camera=per_camera, floor=floor)
    hour = hour_bucket(session, c.captured_at)
    image = (w.c.key, c.camera_id, c.sha256)
    copies = joined.with_only_columns(
        w.c.key, w.c.model_id, c.id.label("frame_id"), c.captured_at, c.brightness, c.is_night,
        _hour_before(session, c.captured_at).label("before"),
        sa.func.row_number().over(partition_by=(*image, hour), order_by=(c.captured_at, c.id)).label("in_hour"),
        sa.func.lag(hour).over(partition_by=image, order_by=(c.captured_at, c.id)).label("seen"),
        maintain_column_froms=False,
    ).subquery("copies")
    k = copies.c
    scored = Prediction.positive_score.is_not(None)
    return (
        sa.select(k.key, k.frame_id, k.captured_at,
                  sa.case((k.is_night.is_(None), 2), (k.is_night.is_(True), 1), else_=0).label("stratum"),
                  _flag(k.brightness.is_not(None)).label("brightness_known"), _flag(scored).label("scored"),
                  _flag(sa.and_(scored, Prediction.flagged.is_(True))).label("flagged_n"),
                  _flag(sa.and_(scored, Prediction.ood_score.is_not(None))).label("ood_known_n"),
                  _flag(sa.and_(scored, Prediction.ood_score > OOD_THRESHOLD)).label("ood_over_n"))
        .select_from(copies)
        .outerjoin(Prediction, sa.and_(Prediction.frame_id == k.frame_id, Prediction.model_version_id == k.model_id,
                                       *at_least(floor, Prediction.frame_id)))
        .where(k.in_hour == 1, k.seen == k.before)
    )
