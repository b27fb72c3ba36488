"""Reading drift windows: each window's counts over all its frames and a bounded, seeded,
day/night-stratified sample of its values, for any number of windows in one statement
(shadow.drift compares them; its module doc says which frames are left out and why).

The sample is the first frames in the order of a seeded hash of the frame id (integer
arithmetic both databases compute alike), taken per day/night stratum in proportion to
the window's frames, so the sample keeps the window's night share.

A closed window (``WindowSpec.closed``: a reference period that ended, whose frames no
longer change) is read once per process and kept (:data:`_CACHE`), by its database,
site, model, span, seed, sample sizes and the site's streaming cameras then (a camera
going offline changes which frames count, so it reads the window again): the hourly
drift pass then reads only the current windows.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import QueryableAttribute, Session, aliased

from bearwatch.schema import Camera, CameraHealth, Frame, Prediction, Site
from shadow.lru import LruCache
from shadow.periods import usable_frame

OOD_THRESHOLD = 1.0  # inference.ood: 1.0 is as far as the farthest 1% of the reference
SAMPLE_FRAMES = 2000  # per window, for the KS metrics: D's sampling error ~0.02, well under drift_min_ks
SAMPLE_EMBEDDINGS = 300  # per window, for the MMD (its kernel matrix is (2 x 300)^2)


@dataclass(frozen=True)
class WindowCounts:
    """Counts over a whole window (frames left out as the module doc says): what the
    share metrics and the minimum-frames rule use."""

    frames: int  # frames with a brightness
    night: int
    night_known: int  # frames with is_night
    flagged: int
    scored: int  # frames with a prediction of the rollout model
    ood_over: int  # scored frames with an out-of-domain score over OOD_THRESHOLD
    ood_known: int

    @classmethod
    def of_arrays(cls, w: WindowData) -> WindowCounts:
        return cls(frames=len(w.brightness), night=int(w.night.sum()), night_known=len(w.night),
                   flagged=int(w.flagged.sum()), scored=len(w.flagged),
                   ood_over=int((w.ood > OOD_THRESHOLD).sum()), ood_known=len(w.ood))


@dataclass(frozen=True)
class WindowData:
    """A window's values: a sample of it when ``counts`` (the whole window's) is given,
    else all of it."""

    brightness: np.ndarray
    sharpness: np.ndarray
    night: np.ndarray  # bool
    scores: np.ndarray  # positive scores of frames with a prediction
    flagged: np.ndarray  # bool
    ood: np.ndarray  # out-of-domain scores (frames that have one)
    embeddings: np.ndarray  # (n, d)
    counts: WindowCounts | None = None

    @property
    def totals(self) -> WindowCounts:
        return self.counts if self.counts is not None else WindowCounts.of_arrays(self)

    @property
    def frames(self) -> int:
        return self.totals.frames


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


_PRIME = 2_147_483_647  # 2^31 - 1


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


def _sample_query(specs: Sequence[WindowSpec], sample_frames: int, sample_embeddings: int, *,
                  per_camera: bool = False) -> sa.Select[Any]:
    """One statement for all ``specs``: per window and stratum (day, night, unknown) the
    counts over every frame, and the sampled frames (see the module doc). ``per_camera``
    (PostgreSQL): each camera's frames of a window read from its (camera_id, captured_at)
    index (LATERAL); joined by camera, PostgreSQL walked every site's frames of the span
    by captured_at for each window (27M rows for 40 windows at 1M frames, issue 13)."""
    w = _windows_cte(specs)
    streaming = sa.and_(Camera.site_id == w.c.site_id, Camera.enabled,
                        Camera.health.not_in([CameraHealth.OFFLINE, CameraHealth.DISABLED]))
    in_window = sa.and_(Frame.camera_id == Camera.id, Frame.captured_at >= w.c.start, Frame.captured_at < w.c.end)
    if per_camera:
        source = (sa.select(Frame.id, Frame.camera_id, Frame.captured_at, Frame.sha256, Frame.brightness,
                            Frame.sharpness, Frame.is_night)
                  # OFFSET 0: kept a subquery, not pulled up into the join it was written to avoid
                  .where(in_window, usable_frame()).offset(0).lateral("camera_frames"))
        c: Any = source.c
        joined = sa.select().select_from(w).join(Camera, streaming).join(source, sa.true())
    else:
        c = Frame
        joined = sa.select().select_from(w).join(Camera, streaming).join(Frame, in_window).where(usable_frame())
    frames = (
        joined.with_only_columns(
            w.c.key, w.c.model_id, c.id.label("frame_id"), c.brightness, c.sharpness, c.is_night,
            sa.case((c.is_night.is_(None), 2), (c.is_night.is_(True), 1), else_=0).label("stratum"),
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
    ranked = (
        sa.select(
            f.key, f.stratum, f.brightness, f.sharpness, f.is_night, Prediction.id.label("prediction_id"),
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
        )
        .select_from(frames)
        .outerjoin(Prediction, sa.and_(Prediction.frame_id == f.frame_id, Prediction.model_version_id == f.model_id))
        .where(f.copy == 1)
        .subquery("ranked")
    )
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
        .outerjoin(chosen, sa.and_(chosen.id == r.prediction_id, in_embedding_sample))
        # r_all = 1: each stratum's counts come with its first frame even when its share rounds to none
        .where(sa.or_(in_sample, in_embedding_sample, r.r_all == 1))
        .order_by(r.key, r.stratum, r.r_all)
    )


@dataclass
class _Gathered:
    strata: dict[int, sa.Row[Any]] = field(default_factory=dict)  # a row of each stratum: its counts
    brightness: list[float] = field(default_factory=list)
    sharpness: list[float] = field(default_factory=list)
    night: list[bool] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    flagged: list[bool] = field(default_factory=list)
    ood: list[float] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)

    def add(self, row: sa.Row[Any]) -> None:
        self.strata[row.stratum] = row
        if row.embedding:
            self.embeddings.append(np.frombuffer(row.embedding, np.float16).astype(np.float32))
        if not row.in_sample:
            return
        if row.brightness is not None:
            self.brightness.append(row.brightness)
        if row.sharpness is not None:
            self.sharpness.append(row.sharpness)
        if row.is_night is not None:
            self.night.append(bool(row.is_night))
        if row.positive_score is not None:
            self.scores.append(row.positive_score)
            self.flagged.append(bool(row.flagged))
            if row.ood_score is not None:
                self.ood.append(row.ood_score)

    def window(self) -> WindowData:
        def total(name: str, strata: tuple[int, ...] = (0, 1, 2)) -> int:
            return sum(int(getattr(self.strata[s], name) or 0) for s in strata if s in self.strata)

        dims = {len(e) for e in self.embeddings}
        return WindowData(
            brightness=np.array(self.brightness, float), sharpness=np.array(self.sharpness, float),
            night=np.array(self.night, bool), scores=np.array(self.scores, float), flagged=np.array(self.flagged, bool),
            ood=np.array(self.ood, float),
            embeddings=np.vstack(self.embeddings) if self.embeddings and len(dims) == 1 else np.zeros((0, 0), np.float32),
            counts=WindowCounts(frames=total("brightness_known"), night=total("n_stratum", (1,)),
                                night_known=total("n_stratum", (0, 1)), flagged=total("flagged_n"), scored=total("scored"),
                                ood_over=total("ood_over_n"), ood_known=total("ood_known_n")),
        )


# Closed windows read: a reference per site and rollout model, at most ~3 MB each.
_CACHE: LruCache[Hashable, WindowData] = LruCache(512)


def _streaming_cameras(session: Session, site_ids: set[int]) -> dict[int, tuple[int, ...]]:
    """The cameras whose frames count in the sites' windows (``_sample_query``'s join)."""
    cameras: dict[int, list[int]] = {site_id: [] for site_id in site_ids}
    for site_id, camera_id in session.execute(
        sa.select(Camera.site_id, Camera.id)
        .where(Camera.site_id.in_(site_ids), Camera.enabled,
               Camera.health.not_in([CameraHealth.OFFLINE, CameraHealth.DISABLED]))
        .order_by(Camera.site_id, Camera.id)
    ):
        cameras[site_id].append(camera_id)
    return {site_id: tuple(ids) for site_id, ids in cameras.items()}


def clear_cache() -> None:
    """Forget the closed windows read so far."""
    _CACHE.clear()


def _cache_keys(session: Session, specs: Sequence[WindowSpec], sample_frames: int,
                sample_embeddings: int) -> dict[int, Hashable]:
    """The cache key of each closed window, by its position in ``specs``."""
    closed = [i for i, spec in enumerate(specs) if spec.closed]
    if not closed:
        return {}
    cameras = _streaming_cameras(session, {specs[i].site_id for i in closed})
    database = str(session.get_bind().engine.url)
    return {i: (database, specs[i].site_id, specs[i].model_id, specs[i].start, specs[i].end, specs[i].seed,
                sample_frames, sample_embeddings, cameras[specs[i].site_id]) for i in closed}


def _cached(keys: dict[int, Hashable]) -> dict[int, WindowData]:
    return {i: window for i, key in keys.items() if (window := _CACHE.get(key)) is not None}


def _keep(windows: dict[Hashable, WindowData]) -> None:
    for key, window in windows.items():
        _CACHE.put(key, window)


def read_windows(session: Session, specs: Sequence[WindowSpec], *, sample_frames: int = SAMPLE_FRAMES,
                 sample_embeddings: int = SAMPLE_EMBEDDINGS) -> list[WindowData]:
    """The windows' counts and samples, in one statement whatever their number and length:
    at most ``sample_frames`` sampled frames, ``sample_embeddings`` embeddings and one
    frame per day/night stratum (its counts) per window. A closed window read before
    with the same streaming cameras comes from the cache (one statement more reads the
    cameras), and the statement reads only the others."""
    if not specs:
        return []
    keys = _cache_keys(session, specs, sample_frames, sample_embeddings)
    found = _cached(keys)
    todo = [i for i in range(len(specs)) if i not in found]
    if todo:
        gathered = [_Gathered() for _ in todo]
        per_camera = session.get_bind().dialect.name == "postgresql"
        query = _sample_query([specs[i] for i in todo], sample_frames, sample_embeddings, per_camera=per_camera)
        for row in session.execute(query):
            gathered[row.key].add(row)
        found.update((i, g.window()) for i, g in zip(todo, gathered, strict=True))
        _keep({keys[i]: found[i] for i in todo if i in keys})
    return [found[i] for i in range(len(specs))]


def sample_seed(site: Site) -> int:
    """A site's sample seed: fixed, so consecutive checks share most of their sample and
    a chart of the statistics does not jitter from one sample to the next."""
    return site.id
