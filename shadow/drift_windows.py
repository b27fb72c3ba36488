"""Reading drift windows: each window's counts over all its frames and a bounded, seeded,
day/night-stratified sample of its values, for any number of windows in one statement
(shadow.drift compares them; its module doc says which frames are left out and why).
The statements, and the sample's order and allocation, are shadow.drift_sampling's: this
module runs them, merges a window's clock hours and keeps what it read.

A closed window (``WindowSpec.closed``: a reference that ended and stays put, ops' or a
promoted site's manual period, whose frames no longer change) is read once per process
and kept (:data:`_CACHE`), by its database, site, model, span, seed, sample sizes and the
site's streaming cameras then (a camera going offline changes which frames count, so it
reads the window again).

A window that moves with the pass (``WindowSpec.hourly``: the current window, and a
manual site's reference, which ends where the current window starts) is read by clock
hour (UTC): per hour and stratum its counts and its first frames in sample order (ids,
ranks, values: at most ``sample_frames`` + ``sample_embeddings``), so the window's counts
are their sums and its sample the first frames of their merge, with the same
proportional allocation; the embeddings of the final sample only are then read by
prediction id. A whole clock hour that ended ``HOUR_SETTLED`` before the pass with no
frame waiting for a score no longer changes: it is kept (:data:`_PIECES`, keyed like a
closed window, streaming cameras included; a part hour at a window's end is not, the
next pass cuts it elsewhere), so a pass reads the open hour and the part hours at the
windows' ends, whatever their length: an hour of the current window is kept already
when it slides into the reference. Each image counts once per window, not per hour,
approximately: when hours are read, one statement finds their frames that are the first
copy of their image in their hour and whose copy before is in the clock hour before, on
the same camera (a frozen stream across the hour; it reads each run of consecutive hours
from the hour before it, each frame once, without the predictions); they are kept with
their hour, and a window leaves those of every hour but its first out of the hours'
counts and candidates. The pair of hours decides, not the window, so a piece stays valid in every
window that holds it; an image frozen, then back, then frozen again on identical bytes
hours later counts once per freeze (the read whole counts it once), and an image of
the hour before the window's first part hour is taken as in the window: rare, and a
stream frozen that long is the guard's business. Where an hour kept too few candidates
to stand in for its repeats, the window is read whole, as before.

Both are kept in the database too (drift_kept_windows, migration 0019), so that a new
process (every restart of `bearwatch shadow`) reads them back instead of the frames: a row
per closed window or closed hour, keyed by a digest of the in-memory key less the database
(plus the kind), its arrays in a blob (np.save, no pickle) with :data:`KEPT_FORMAT`. What
the memory misses is looked up in one statement for all windows and hours (a row of
another format, or one that does not load, is ignored, counted in
``bearwatch_drift_kept_ignored_total`` (shadow.metrics) and logged, and read from the
frames again); what a process read and kept waits in :data:`_UNSTORED` until the drift
pass's write transaction writes it in one insert (:func:`store_kept_windows`,
shadow.drift), which also deletes, in one statement, the hours that ended twice the
longest current window ago (a manual site's: as far back as its reference reaches) and
each site's closed windows older than its newest one (its reference, rollout model or
cameras changed). A kept window assumes its frames no longer change: frames added to a
past hour afterwards (a backfill) are not seen until its row is deleted.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
from collections.abc import Hashable, Sequence
from dataclasses import astuple, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from bearwatch.db import upsert_insert
from bearwatch.schema import Camera, CameraHealth, DriftKeptWindow, Prediction
from shadow import metrics
from shadow.drift_sampling import (
    COUNTS,
    HOUR,
    OOD_THRESHOLD,
    WindowSpec,
    candidate_query,
    repeats_query,
    sample_query,
    window_floor,
)
from shadow.lru import LruCache

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
        if row.in_sample:
            self.add_values(row)

    def add_values(self, row: Any) -> None:
        """A sampled frame's values (a row of sample_query or a _Candidate)."""
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

    def window(self, counts: WindowCounts | None = None) -> WindowData:
        """The window read; ``counts``: its counts when they were not read with the rows."""
        def total(name: str, strata: tuple[int, ...] = (0, 1, 2)) -> int:
            return sum(int(getattr(self.strata[s], name) or 0) for s in strata if s in self.strata)

        dims = {len(e) for e in self.embeddings}
        return WindowData(
            brightness=np.array(self.brightness, float), sharpness=np.array(self.sharpness, float),
            night=np.array(self.night, bool), scores=np.array(self.scores, float), flagged=np.array(self.flagged, bool),
            ood=np.array(self.ood, float),
            embeddings=np.vstack(self.embeddings) if self.embeddings and len(dims) == 1 else np.zeros((0, 0), np.float32),
            counts=counts if counts is not None else WindowCounts(
                frames=total("brightness_known"), night=total("n_stratum", (1,)), night_known=total("n_stratum", (0, 1)),
                flagged=total("flagged_n"), scored=total("scored"), ood_over=total("ood_over_n"),
                ood_known=total("ood_known_n")),
        )


log = logging.getLogger(__name__)

# What a process keeps of drift windows in memory, at most (each cache): past it the least
# recently used go, and a pass that needs them reads them back from drift_kept_windows.
MEMORY_BUDGET = 256 * 2**20


def _window_bytes(window: WindowData) -> int:
    return sum(getattr(window, name).nbytes for name in _WINDOW_ARRAYS)


# Closed windows read: a reference per site and rollout model, at most ~3 MB each.
_CACHE: LruCache[Hashable, WindowData] = LruCache(512, weight=_window_bytes, max_weight=MEMORY_BUDGET)


def _streaming_cameras(session: Session, site_ids: set[int]) -> dict[int, tuple[int, ...]]:
    """The cameras whose frames count in the sites' windows (``sample_query``'s join)."""
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
    """Forget the closed windows and hours read so far, and those not yet written to the
    database (as a new process: it reads them back from drift_kept_windows)."""
    _CACHE.clear()
    _PIECES.clear()
    _UNSTORED.clear()


CLOSED, HOUR_PIECE = "closed", "hour"  # drift_kept_windows.kind
# The payload's layout (_dump_window, _dump_piece, _PACKED, _REPEATS): a row of another is
# ignored. 2: a piece holds its repeats of the hour before it.
KEPT_FORMAT = 2


def _kept_key(database: str, kind: str, spec: WindowSpec, sample_frames: int, sample_embeddings: int,
              cameras: tuple[int, ...]) -> tuple[str, str]:
    """A kept window's key in memory: its database and the digest of what its read depends
    on, which is its drift_kept_windows row's key (any process, same database)."""
    what = [kind, spec.site_id, spec.model_id, spec.start.astimezone(timezone.utc).isoformat(),
            spec.end.astimezone(timezone.utc).isoformat(), spec.seed, sample_frames, sample_embeddings, list(cameras)]
    return database, hashlib.sha256(json.dumps(what).encode()).hexdigest()


def _cache_keys(specs: Sequence[WindowSpec], database: str, cameras: dict[int, tuple[int, ...]], sample_frames: int,
                sample_embeddings: int) -> dict[int, tuple[str, str]]:
    """The cache key of each closed window, by its position in ``specs``."""
    return {i: _kept_key(database, CLOSED, spec, sample_frames, sample_embeddings, cameras[spec.site_id])
            for i, spec in enumerate(specs) if spec.closed}


def _cached(keys: dict[int, tuple[str, str]]) -> dict[int, WindowData]:
    return {i: window for i, key in keys.items() if (window := _CACHE.get(key)) is not None}


def _keep(key: tuple[str, str], spec: WindowSpec, window: WindowData) -> None:
    _CACHE.put(key, window)
    _UNSTORED.add(key, CLOSED, spec, _dump_window(window))


# What a kept row's payload holds: numpy arrays one after the other (np.save, no pickle).
_WINDOW_ARRAYS = ("brightness", "sharpness", "night", "scores", "flagged", "ood", "embeddings")


def _dump(arrays: Sequence[np.ndarray]) -> bytes:
    out = io.BytesIO()
    for array in arrays:
        np.save(out, array, allow_pickle=False)
    return out.getvalue()


def _load(payload: bytes, n: int) -> list[np.ndarray]:
    source = io.BytesIO(payload)
    arrays = [np.load(source, allow_pickle=False) for _ in range(n)]
    if source.tell() != len(payload):
        raise ValueError("bytes left after the arrays")
    return arrays


def _dump_window(window: WindowData) -> bytes:
    counts = np.array(astuple(window.counts) if window.counts is not None else (), np.int64)
    return _dump([*(getattr(window, name) for name in _WINDOW_ARRAYS), counts])


def _load_window(payload: bytes) -> WindowData:
    *values, counts = _load(payload, len(_WINDOW_ARRAYS) + 1)
    return WindowData(**dict(zip(_WINDOW_ARRAYS, values, strict=True)),
                      counts=WindowCounts(*(int(c) for c in counts)) if len(counts) else None)


class _Unstored:
    """Windows and hours kept in memory and not yet in drift_kept_windows, per database:
    the drift pass writes them in its write transaction (:func:`store_kept_windows`). At
    most ``limit`` per database (a process that only reads, such as `bearwatch drift`
    without --record, never writes them): the oldest go first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._rows: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def add(self, key: tuple[str, str], kind: str, spec: WindowSpec, payload: bytes) -> None:
        database, digest = key
        with self._lock:
            rows = self._rows.setdefault(database, {})
            rows[digest] = {"key": digest, "kind": kind, "site_id": spec.site_id, "model_version_id": spec.model_id,
                            "window_start": spec.start, "window_end": spec.end, "format": KEPT_FORMAT,
                            "payload": payload}
            while len(rows) > self.limit:
                del rows[next(iter(rows))]

    def take(self, database: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._rows.pop(database, {}).values())

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()


HOUR_SETTLED = timedelta(minutes=5)  # an hour this long over, with no frame waiting for a score, is closed


class _Candidate(NamedTuple):
    """A frame of a piece that may be in its window's sample (values as the sample needs them)."""

    stratum: int
    rank: int
    frame_id: int
    prediction_id: int | None
    in_all: bool  # among its stratum's first sample_frames in the piece
    in_scored: bool  # among its stratum's first sample_embeddings scored frames in the piece
    brightness: float | None
    sharpness: float | None
    is_night: bool | None
    positive_score: float | None
    flagged: bool | None
    ood_score: float | None


# A _Candidate packed (about 60 bytes): None is -1 for ids and flags, and a clear bit of
# "known" for the floats.
_PACKED = np.dtype([("stratum", "i1"), ("rank", "i8"), ("frame_id", "i8"), ("prediction_id", "i8"), ("in_all", "?"),
                    ("in_scored", "?"), ("brightness", "f8"), ("sharpness", "f8"), ("is_night", "i1"),
                    ("positive_score", "f8"), ("flagged", "i1"), ("ood_score", "f8"), ("known", "u1")])
_FLOATS = ("brightness", "sharpness", "positive_score", "ood_score")


def _pack(candidates: Sequence[_Candidate]) -> np.ndarray:
    def flag(value: bool | None) -> int:
        return -1 if value is None else int(value)

    return np.array([
        (c.stratum, c.rank, c.frame_id, -1 if c.prediction_id is None else c.prediction_id, c.in_all, c.in_scored,
         c.brightness or 0.0, c.sharpness or 0.0, flag(c.is_night), c.positive_score or 0.0, flag(c.flagged),
         c.ood_score or 0.0, sum(1 << i for i, name in enumerate(_FLOATS) if getattr(c, name) is not None))
        for c in candidates], dtype=_PACKED)


def _unpack(packed: np.ndarray) -> list[_Candidate]:
    def value(row: Any, i: int) -> float | None:
        return float(row[_FLOATS[i]]) if int(row["known"]) >> i & 1 else None

    def flag(value: int) -> bool | None:
        return None if value < 0 else bool(value)

    return [_Candidate(int(r["stratum"]), int(r["rank"]), int(r["frame_id"]),
                       None if r["prediction_id"] < 0 else int(r["prediction_id"]), bool(r["in_all"]), bool(r["in_scored"]),
                       value(r, 0), value(r, 1), flag(int(r["is_night"])), value(r, 2), flag(int(r["flagged"])), value(r, 3))
            for r in packed]


# A frame of a piece that is the first copy of its image in the piece and was seen in the
# clock hour before it (a frozen stream across the hour): what it added to the piece's counts.
_REPEATS = np.dtype([("frame_id", "i8"), ("stratum", "i1"), ("counts", "i8", (len(COUNTS),))])


@dataclass(frozen=True)
class _Piece:
    """A window's frames in one clock hour (each image once within it): per stratum the
    counts (COUNTS) and the first frames in sample order (_PACKED), and its repeats of the
    hour before it (_REPEATS: none for a piece that does not start on the hour, always the
    first of its window)."""

    counts: dict[int, tuple[int, ...]]
    packed: np.ndarray
    pending: int  # frames still waiting for a score: the piece may still change
    repeats: np.ndarray = field(default_factory=lambda: np.zeros(0, _REPEATS))


def _runs(pieces: Sequence[WindowSpec]) -> list[list[int]]:
    """The pieces that start on the hour, in runs of consecutive hours of one site, model
    and seed (their positions): each run's repeats are read in one span, each frame once."""
    order = sorted((i for i, p in enumerate(pieces) if p.start == _hour_of(p.start)),
                   key=lambda i: (pieces[i].site_id, pieces[i].model_id or -1, pieces[i].seed, pieces[i].start))
    runs: list[list[int]] = []
    for i in order:
        last = pieces[runs[-1][-1]] if runs else None
        if last is not None and (last.site_id, last.model_id, last.seed, last.end) == (
                pieces[i].site_id, pieces[i].model_id, pieces[i].seed, pieces[i].start):
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _repeats(session: Session, pieces: Sequence[WindowSpec], *, per_camera: bool) -> list[np.ndarray]:
    """Each piece's repeats of the clock hour before it (_REPEATS), in one statement: for
    the pieces that start on the hour (the others are the first of their window, whose
    repeats the window does not drop). A piece's repeats depend on it and the hour before
    only, whichever run it is read in."""
    found: list[list[tuple[Any, ...]]] = [[] for _ in pieces]
    runs = _runs(pieces)
    if runs:
        spans = [replace(pieces[run[0]], start=pieces[run[0]].start - HOUR, end=pieces[run[-1]].end) for run in runs]
        by_hour = [{pieces[i].start: i for i in run} for run in runs]
        for row in session.execute(repeats_query(session, spans, per_camera=per_camera)):
            counts = (1, *(int(getattr(row, name)) for name in COUNTS[1:]))
            if (i := by_hour[row.key].get(_hour_of(row.captured_at))) is not None:
                found[i].append((row.frame_id, row.stratum, counts))
    return [np.array(rows, _REPEATS) for rows in found]


def _hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _pieces_of(spec: WindowSpec) -> list[WindowSpec]:
    """The window cut at each clock hour (UTC)."""
    cuts = [spec.start]
    hour = _hour_of(spec.start) + HOUR
    while hour < spec.end:
        cuts.append(hour)
        hour += HOUR
    cuts.append(spec.end)
    return [replace(spec, start=a, end=b, hourly=False) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def _read_pieces(session: Session, pieces: Sequence[WindowSpec], sample_frames: int, sample_embeddings: int,
                 ) -> list[_Piece]:
    """The pieces from the frames: two statements (their candidates, their repeats)."""
    per_camera = session.get_bind().dialect.name == "postgresql"
    counts: list[dict[int, tuple[int, ...]]] = [{} for _ in pieces]
    candidates: list[list[_Candidate]] = [[] for _ in pieces]
    pending = [0] * len(pieces)
    for row in session.execute(candidate_query(pieces, sample_frames, sample_embeddings, per_camera=per_camera,
                                               floor=window_floor(session, pieces))):
        counts[row.key][row.stratum] = tuple(int(getattr(row, name) or 0) for name in COUNTS)
        pending[row.key] += int(row.pending_n or 0)
        candidates[row.key].append(_Candidate(
            row.stratum, row.rank, row.frame_id, row.prediction_id, bool(row.in_all), bool(row.in_scored),
            row.brightness, row.sharpness, row.is_night, row.positive_score, row.flagged, row.ood_score))
    repeats = _repeats(session, pieces, per_camera=per_camera)
    return [_Piece(c, _pack(k), p, r) for c, k, p, r in zip(counts, candidates, pending, repeats, strict=True)]


def _cut_short(piece: _Piece, repeated: np.ndarray) -> bool:
    """Whether leaving out the ``repeated`` frame ids leaves a stratum of ``piece`` with
    fewer first frames than the window may need (the piece kept only its first ones)."""
    packed = piece.packed
    hit = np.isin(packed["frame_id"], repeated)
    for s, counts in piece.counts.items():
        in_stratum = packed["stratum"] == s
        if (hit & in_stratum).any() and (packed["in_all"][in_stratum].sum() < counts[0]
                                         or packed["in_scored"][in_stratum].sum() < counts[2]):
            return True
    return False


def _merge(pieces: Sequence[_Piece], sample_frames: int, sample_embeddings: int,
           ) -> tuple[WindowCounts, list[_Candidate], list[_Candidate]] | None:
    """A window from its pieces less the repeats of each but the first (the first copies
    in an hour of images seen in the hour before: module doc): its counts, its sampled
    frames and its embedding sample, each in the full read's order (stratum, then sample
    order). None: a piece kept too few first frames to stand in for its repeats (the
    window is then read whole)."""
    repeats = np.concatenate([p.repeats for p in pieces[1:]]) if len(pieces) > 1 else np.zeros(0, _REPEATS)
    totals = {s: [sum(p.counts.get(s, (0,) * len(COUNTS))[i] for p in pieces)
                  - int(repeats["counts"][repeats["stratum"] == s, i].sum()) for i in range(len(COUNTS))]
              for s in (0, 1, 2)}
    n_window, scored_window = sum(t[0] for t in totals.values()), sum(t[2] for t in totals.values())
    repeated = repeats["frame_id"]
    if any(len(p.repeats) and _cut_short(p, p.repeats["frame_id"]) for p in pieces[1:]):
        return None
    every = np.concatenate([p.packed for p in pieces]) if pieces else np.zeros(0, _PACKED)
    every = every[~np.isin(every["frame_id"], repeated)]
    sampled: list[_Candidate] = []
    embedded: list[_Candidate] = []
    for s in (0, 1, 2):
        stratum = every[every["stratum"] == s]
        stratum = stratum[np.lexsort((stratum["frame_id"], stratum["rank"]))]  # sample order
        # sample_query's proportional allocation: the i-th when i * window <= size * stratum
        if n_window:
            sampled += _unpack(stratum[stratum["in_all"]][:sample_frames * totals[s][0] // n_window])
        if scored_window:
            embedded += _unpack(stratum[stratum["in_scored"]][:sample_embeddings * totals[s][2] // scored_window])
    counts = WindowCounts(frames=sum(t[1] for t in totals.values()), night=totals[1][0],
                          night_known=totals[0][0] + totals[1][0], flagged=sum(t[3] for t in totals.values()),
                          scored=scored_window, ood_over=sum(t[5] for t in totals.values()),
                          ood_known=sum(t[4] for t in totals.values()))
    return counts, sampled, embedded


def _window_of(counts: WindowCounts, sampled: list[_Candidate], embedded: list[_Candidate],
               embeddings: dict[int, bytes | None]) -> WindowData:
    """The WindowData the full read gives (_Gathered): values of the sampled frames."""
    gathered = _Gathered()
    for c in sampled:
        gathered.add_values(c)
    gathered.embeddings = [np.frombuffer(e, np.float16).astype(np.float32) for c in embedded
                           if c.prediction_id is not None and (e := embeddings.get(c.prediction_id))]
    return gathered.window(counts)


# Closed hours of hourly windows read: at most sample_frames + sample_embeddings
# candidates per stratum (mostly one stratum an hour), 60 bytes each: at most ~0.3 MB an
# hour (a site with over 2,300 usable frames an hour), ~90 KB at 25 cameras a frame a
# minute. A site's 24 h window is 24 hours, a manual site's 7-day reference 168 more:
# 4,096 hours are ~20 manual sites (~370 MB at 25 cameras each, 1.2 GB at most), so the
# hours are held to MEMORY_BUDGET as well; a pass that needs more reads the rest back
# from drift_kept_windows, not from the frames.
_PIECES: LruCache[Hashable, _Piece] = LruCache(
    4096, weight=lambda piece: piece.packed.nbytes + piece.repeats.nbytes, max_weight=MEMORY_BUDGET)
# Kept in memory, not yet written to drift_kept_windows: at most what the caches hold.
_UNSTORED = _Unstored(4096 + 512)


def _dump_piece(piece: _Piece) -> bytes:
    counts = np.array([(s, *c) for s, c in sorted(piece.counts.items())], np.int64).reshape(-1, 1 + len(COUNTS))
    return _dump([counts, piece.packed, np.array([piece.pending], np.int64), piece.repeats])


def _load_piece(payload: bytes) -> _Piece:
    counts, packed, pending, repeats = _load(payload, 4)
    if (packed.dtype != _PACKED or repeats.dtype != _REPEATS or counts.ndim != 2 or counts.shape[1] != 1 + len(COUNTS)
            or pending.shape != (1,)):
        raise ValueError("arrays of another layout")
    return _Piece({int(row[0]): tuple(int(v) for v in row[1:]) for row in counts}, packed, int(pending[0]), repeats)


def _may_keep(piece: WindowSpec, now: datetime) -> bool:
    """Whether a piece read at ``now`` (the pass's) is a whole clock hour that ended
    HOUR_SETTLED ago: kept once read, if no frame of it waits for a score. A part hour at
    either end of a window is not kept: the next pass cuts it elsewhere (a sliding
    reference's end moves with the pass), so it would be kept under a new key each time."""
    return piece.end - piece.start == HOUR and piece.end <= now - HOUR_SETTLED


_Plans = dict[int, list[tuple[WindowSpec, tuple[str, str]]]]


def _hour_plans(specs: dict[int, WindowSpec], database: str, cameras: dict[int, tuple[int, ...]], sample_frames: int,
                sample_embeddings: int) -> _Plans:
    """Each hourly window's pieces (clock hours) with their cache keys."""
    return {i: [(p, _kept_key(database, HOUR_PIECE, p, sample_frames, sample_embeddings, cameras[p.site_id]))
                for p in _pieces_of(spec)] for i, spec in specs.items()}


def _recall(session: Session, wanted: dict[tuple[str, str], str]) -> dict[tuple[str, str], WindowData | _Piece]:
    """The rows of drift_kept_windows that hold ``wanted`` (key: kind), none of them in
    memory, loaded, and put into the caches: one statement for all. The caller uses what
    this returns, not the caches, which may hold fewer than a pass needs. A row of another
    format or that does not load is left out (counted, logged): its window is read from the
    frames again and its row written anew."""
    loaded: dict[tuple[str, str], WindowData | _Piece] = {}
    if not wanted:
        return loaded
    by_digest = {digest: (database, digest) for database, digest in wanted}
    ignored = 0
    for row in session.execute(sa.select(DriftKeptWindow.key, DriftKeptWindow.format, DriftKeptWindow.payload)
                               .where(DriftKeptWindow.key.in_(by_digest))):
        key = by_digest[row.key]
        try:
            if row.format != KEPT_FORMAT:
                raise ValueError(f"format {row.format}, not {KEPT_FORMAT}")
            if wanted[key] == CLOSED:
                _CACHE.put(key, window := _load_window(row.payload))
                loaded[key] = window
            else:
                _PIECES.put(key, piece := _load_piece(row.payload))
                loaded[key] = piece
        # np.load of damaged bytes raises many kinds (ValueError, EOFError, tokenize.TokenError
        # from its header, ...): the row is only a copy, the frames are read instead
        except Exception as exc:  # noqa: BLE001 - any failure to load a kept row: read the frames
            ignored += 1
            log.debug("drift: kept window %s ignored: %s", row.key, exc)
    if ignored:
        metrics.DRIFT_KEPT_IGNORED.inc(ignored)
        log.warning("drift: %d kept windows ignored (another format or unreadable); read from the frames again", ignored)
    return loaded


def _read_hourly(session: Session, specs: dict[int, WindowSpec], plans: _Plans, kept: dict[tuple[str, str], _Piece],
                 now: datetime, sample_frames: int, sample_embeddings: int) -> dict[int, WindowData]:
    """The windows in ``specs`` from their pieces (``plans``): the closed hours ``kept``
    (from :data:`_PIECES` and drift_kept_windows: read_windows), the others read (and kept
    once closed). Three statements: the pieces, their repeats, the embeddings. A window
    missing from the answer is to be read whole (_merge)."""
    keyed = list(specs.items())
    known = dict(kept)
    todo = list({key: p for i, _ in keyed for p, key in plans[i] if key not in known}.items())  # each piece once
    read = _read_pieces(session, [p for _, p in todo], sample_frames, sample_embeddings) if todo else []
    for (key, p), piece in zip(todo, read, strict=True):
        known[key] = piece
        if piece.pending == 0 and _may_keep(p, now):  # it no longer changes
            _PIECES.put(key, piece)
            _UNSTORED.add(key, HOUR_PIECE, p, _dump_piece(piece))
    merged = {i: m for i, _ in keyed if (m := _merge([known[key] for _, key in plans[i]], sample_frames, sample_embeddings))}
    wanted = [c.prediction_id for _, _, embedded in merged.values() for c in embedded if c.prediction_id is not None]
    embeddings: dict[int, bytes | None] = {row.id: row.embedding for row in session.execute(
        sa.select(Prediction.id, Prediction.embedding).where(Prediction.id.in_(wanted)))} if wanted else {}
    return {i: _window_of(*m, embeddings) for i, m in merged.items()}


def read_windows(session: Session, specs: Sequence[WindowSpec], *, sample_frames: int = SAMPLE_FRAMES,
                 sample_embeddings: int = SAMPLE_EMBEDDINGS, now: datetime | None = None) -> list[WindowData]:
    """The windows' counts and samples, in one statement whatever their number and length:
    at most ``sample_frames`` sampled frames, ``sample_embeddings`` embeddings and one
    frame per day/night stratum (its counts) per window. A closed window read before
    with the same streaming cameras comes from the cache (one statement more reads the
    cameras), and the statement reads only the others. An ``hourly`` window is read by
    clock hour, its closed hours from the cache (three statements more, _read_hourly).
    What the caches miss of both is looked up in drift_kept_windows (one statement more).
    ``now``: the pass's, after which an hour settles (default: the latest window end)."""
    if not specs:
        return []
    now = now if now is not None else max(spec.end for spec in specs)
    database = str(session.get_bind().engine.url)
    kept = [spec for spec in specs if spec.closed or spec.hourly]
    cameras = _streaming_cameras(session, {spec.site_id for spec in kept}) if kept else {}
    keys = _cache_keys(specs, database, cameras, sample_frames, sample_embeddings)
    found = _cached(keys)
    hourly = {i: spec for i, spec in enumerate(specs) if spec.hourly}
    plans = _hour_plans(hourly, database, cameras, sample_frames, sample_embeddings)
    # The kept hours the pass needs, held here: more than _PIECES holds when many sites'
    # references are read by hour (the rest comes from drift_kept_windows, not the frames).
    known = {key: piece for plan in plans.values() for _, key in plan if (piece := _PIECES.get(key)) is not None}
    missing = {key: CLOSED for i, key in keys.items() if i not in found}
    missing |= {key: HOUR_PIECE for i, plan in plans.items() for p, key in plan
                if _may_keep(p, now) and key not in known}
    recalled = _recall(session, missing)
    found |= {i: window for i, key in keys.items() if isinstance(window := recalled.get(key), WindowData)}
    known |= {key: piece for key, piece in recalled.items() if isinstance(piece, _Piece)}
    if hourly:
        found.update(_read_hourly(session, hourly, plans, known, now, sample_frames, sample_embeddings))
    todo = [i for i in range(len(specs)) if i not in found]
    if todo:
        gathered = [_Gathered() for _ in todo]
        per_camera = session.get_bind().dialect.name == "postgresql"
        windows = [specs[i] for i in todo]
        query = sample_query(windows, sample_frames, sample_embeddings, per_camera=per_camera,
                             floor=window_floor(session, windows))
        for row in session.execute(query):
            gathered[row.key].add(row)
        found.update((i, g.window()) for i, g in zip(todo, gathered, strict=True))
        for i in todo:
            if i in keys:
                _keep(keys[i], specs[i], found[i])
    return [found[i] for i in range(len(specs))]


def store_kept_windows(session: Session, now: datetime, *, keep_hours: float,
                       longer: tuple[sa.Select[int], float] | None = None) -> int:
    """Write the closed windows and hours this process read and kept since the last call
    (on ``session``'s database) to drift_kept_windows, in one insert (a row already there,
    one that was ignored, is replaced); then delete in one statement what no window needs
    any more: hours that ended ``keep_hours`` before ``now`` (``longer``: the ids of the
    sites whose hours are kept longer, those of a sliding reference, and for how many
    hours), and each site's
    closed windows older than its newest (the reference or the rollout model changed, or
    a camera came or went). For the drift pass's write transaction; returns the rows written."""
    rows = [{**row, "created_at": now} for row in _UNSTORED.take(str(session.get_bind().engine.url))]
    if rows:
        statement = upsert_insert(session, DriftKeptWindow)
        session.execute(statement.on_conflict_do_update(
            index_elements=[DriftKeptWindow.key],
            set_={name: statement.excluded[name] for name in ("kind", "format", "payload", "created_at")}), rows)
    hour = DriftKeptWindow.kind == HOUR_PIECE
    old_hours = [sa.and_(hour, DriftKeptWindow.window_end < now - timedelta(hours=keep_hours))]
    if longer is not None:
        site_ids, hours = longer
        old_hours = [sa.and_(old_hours[0], DriftKeptWindow.site_id.not_in(site_ids.scalar_subquery())),
                     sa.and_(hour, DriftKeptWindow.window_end < now - timedelta(hours=max(hours, keep_hours)))]
    newer = aliased(DriftKeptWindow)
    session.execute(
        sa.delete(DriftKeptWindow).where(sa.or_(
            *old_hours,
            sa.and_(DriftKeptWindow.kind == CLOSED,
                    sa.select(newer.key).where(newer.kind == CLOSED, newer.site_id == DriftKeptWindow.site_id,
                                               newer.created_at > DriftKeptWindow.created_at).exists()),
        )).execution_options(synchronize_session=False))
    return len(rows)
