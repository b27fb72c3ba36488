"""Sampling one camera: capture under a watchdog, check, store the file, commit the row.

One :class:`CameraSampler` per camera keeps what a camera's samples share: the last
thumbnail and fingerprint (change score, frozen check), the failure count and the reconnect backoff,
the source's replay state. The row is committed only after the JPEG is durable, and
only while this worker still holds the camera's lease; a failed commit deletes the file.

An RTSP or device camera is opened per sample (open-grab-release) until its captures
take about its interval: after SWITCH_AFTER successful captures in a row that each took
more than SWITCH_SHARE of the interval, it is switched to a persistent reader in a
process of its own (ingest.capture_pool.ReaderProcess), for as long as this worker holds
it with this interval. The switch is logged, written as a health event ("persistent
reader: opening took 2.4 s at a 2 s interval") and exported as
bearwatch_camera_persistent_reader. Slots missed while a sample still ran are counted
in bearwatch_ingest_slots_missed_total by why (see ingest.metrics).
"""

from __future__ import annotations

import enum
import logging
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import cv2
import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import error_line, write_transaction
from bearwatch.errors import FrameError
from bearwatch.images import ImageRefused
from bearwatch.redact import redact_text
from bearwatch.schema import Camera, CameraHealth, Frame, utcnow
from ingest.capture_pool import CapturePool, CapturePoolBusy, ReaderProcess
from ingest.health import backoff_s, health_after, last_note, note_health, set_health
from ingest.metrics import (
    CAMERA_UP,
    CAPTURE_SECONDS,
    FRAMES_CAPTURED,
    LAST_FRAME,
    PERSISTENT_READER,
    RECONNECTS,
    SLOTS,
    SLOTS_MISSED,
    forget_camera,
)
from ingest.quality import check_frame, frame_stats, is_repeat
from ingest.sources import Captured, NoNewFrame, SourceKind, SourceState, capture, resolve_source, source_kind
from ingest.store import FrameStore

log = logging.getLogger(__name__)
JPEG_QUALITY = 90
T = TypeVar("T")


class Outcome(str, enum.Enum):
    STORED = "stored"
    FAILED = "failed"  # the source gave no frame (unreachable, stalled, corrupt, ...)
    EMPTY = "empty"
    BLACK = "black"
    GREY = "grey"
    FROZEN = "frozen"
    WRONG_SIZE = "wrong_size"
    TOO_LARGE = "too_large"  # refused from its size in bytes or its header's pixels, before decoding
    OUTSIDE_FOLDER = "outside_folder"  # an image folder's symbolic link out of the folder, refused
    NO_NEW = "no_new"  # an image folder has nothing newer yet (not a failure)
    BACKOFF = "backoff"  # skipped: waiting before reconnecting to a failing camera
    POOL_BUSY = "pool_busy"  # skipped: every capture process busy (the worker's shortage, not the camera's)
    LEASE_LOST = "lease_lost"  # another worker owns the camera now; nothing written
    NO_DATABASE = "no_database"  # the database is unreachable (restarting); nothing written
    # (the service also counts "missed": a slot whose run was skipped, see ingest.scheduler)
    # Every slot counts in bearwatch_ingest_slots_total{outcome}; only STORED is a frame
    # captured (bearwatch_frames_captured_total).


class LeaseLost(Exception):
    pass


FIRST_CAPTURE_GUESS_S = 3.0  # an RTSP open-grab-release, until this camera's own are measured
CAPTURE_TIME_WEIGHT = 0.3  # of the newest capture in the running average
# A camera whose last SWITCH_AFTER successful open-grab-release captures each took more
# than SWITCH_SHARE of its interval is switched to a persistent reader: at that share,
# the open's own jitter makes a sample outlast its slot, and every such slot is lost.
SWITCH_SHARE = 0.5
SWITCH_AFTER = 3
READER_NOTE = "persistent reader"  # how its health note (and `bearwatch status`) starts
PER_SAMPLE_NOTE = "opened per sample again (ingest started or took the camera over); measuring its capture time"


@dataclass(frozen=True)
class SamplerOptions:
    capture_timeout_s: float = 10.0  # OpenCV open/read deadlines and the HTTP socket timeout
    watchdog_grace_s: float = 2.0  # past timeout + grace a capture thread is abandoned
    backoff_cap_s: float = 60.0
    tls: ssl.SSLContext | None = None  # HTTPS cameras (ingest.sources.camera_tls_context); None: system CAs


@dataclass(frozen=True)
class CameraSpec:
    id: int
    site_id: int
    source: str
    interval_s: float


class Watchdog:
    """Runs captures in their own threads with a hard deadline. A capture that outlives
    it is abandoned (a thread blocked inside FFmpeg cannot be killed; its own
    open/read deadlines end it later) and its camera is not captured again until it has."""

    def __init__(self) -> None:
        self._hung: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()

    def hung(self) -> int:
        with self._lock:
            return sum(t.is_alive() for t in self._hung.values())

    def run(self, key: int, fn: Callable[[], T], deadline_s: float) -> T:
        with self._lock:
            stuck = self._hung.get(key)
            if stuck is not None and stuck.is_alive():
                raise FrameError("the previous capture is still hung (abandoned by the watchdog)")
            self._hung.pop(key, None)
        value: list[T] = []
        error: list[BaseException] = []

        def target() -> None:
            try:
                value.append(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below, which re-raises it
                error.append(exc)

        thread = threading.Thread(target=target, name=f"capture-{key}", daemon=True)
        thread.start()
        thread.join(deadline_s)
        if thread.is_alive():
            with self._lock:
                self._hung[key] = thread
            raise FrameError(f"capture did not finish within {deadline_s:g}s; abandoned by the watchdog")
        if error:
            raise error[0]
        return value[0]


class CameraSampler:
    def __init__(
        self, factory: sessionmaker[Session], store: FrameStore, spec: CameraSpec, *,
        options: SamplerOptions = SamplerOptions(), owner: str | None = None,
        watchdog: Watchdog | None = None, rng: random.Random | None = None, pool: CapturePool | None = None,
    ) -> None:
        self.pool = pool
        self.factory, self.store, self.spec, self.options, self.owner = factory, store, spec, options, owner
        self.watchdog = watchdog or Watchdog()
        self.rng = rng or random.Random()
        self.labels = (str(spec.site_id), str(spec.id))
        self.state = SourceState()
        self._previous: np.ndarray | None = None  # last kept sample's thumbnail (change score)
        self._previous_fp: np.ndarray | None = None  # last sample's fingerprint (frozen check)
        self._repeats = 0
        self._failures = 0
        self._retry_at = 0.0
        self._gauges = threading.Lock()  # setting the camera's gauges vs forget()
        self._forgotten = False
        self.last_frame_at: datetime | None = None
        # RTSP and device captures take a capture process; their measured time sizes the pool.
        self.uses_pool = source_kind(spec.source) in (SourceKind.RTSP, SourceKind.DEVICE)
        self.capture_s = FIRST_CAPTURE_GUESS_S
        # The persistent reader, once this camera's captures take about its interval.
        self.reader: ReaderProcess | None = None
        self.reader_note: str | None = None  # why it was switched (also a health event)
        self._slow = deque[float](maxlen=SWITCH_AFTER)  # the last successful open-grab-release times
        self._captured = False  # the current (or last) sample's capture gave a frame
        self._busy_misses = 0  # slots missed while the current sample runs (counted when it ends)
        self._misses_lock = threading.Lock()
        self._pending_note: str | None = None  # written at the first sample, under the lease
        if self.uses_pool:
            PERSISTENT_READER.labels(*self.labels).set(0)
        with factory() as session:
            camera = session.get(Camera, spec.id)
            if camera is not None and self.uses_pool and (last_note(session, spec.id) or "").startswith(READER_NOTE):
                self._pending_note = PER_SAMPLE_NOTE  # the note `bearwatch status` shows is no longer true
            if camera is not None:
                self._failures = camera.consecutive_failures
                self.last_frame_at = camera.last_frame_at
                try:  # an image folder resumes after the last image it replayed
                    if source_kind(resolve_source(spec.source)) is SourceKind.FOLDER:
                        self.state.replayed_until = camera.last_frame_at
                except FrameError:
                    pass

    def sample(self) -> Outcome:
        try:
            if self._pending_note is not None:
                self._note(self._pending_note)
                self._pending_note = None
            outcome = self._sample()
        except sa.exc.OperationalError as exc:
            # A database restart: the file was removed with its row; the next slot tries
            # again on a fresh connection (the engine pings before reuse).
            log.warning("camera %d: database unavailable, frame not stored (%s)", self.spec.id,
                        error_line(exc))
            outcome = Outcome.NO_DATABASE
        SLOTS.labels(*self.labels, outcome.value).inc()
        with self._misses_lock:
            missed, self._busy_misses = self._busy_misses, 0
        if missed:
            reason = "capture_slower_than_interval" if self._captured else "capture_failing"
            SLOTS_MISSED.labels(*self.labels, reason).inc(missed)
        return outcome

    def slot_missed(self, *, still_running: bool) -> None:
        """A slot with no sample (ingest.scheduler). ``still_running``: the previous sample
        had not ended; it is counted when that sample ends, by whether its capture got a
        frame (a slow camera) or not (a failing one). Else the run came too late."""
        SLOTS.labels(*self.labels, "missed").inc()  # a slot, not a frame captured
        if still_running:
            with self._misses_lock:
                self._busy_misses += 1
        else:
            SLOTS_MISSED.labels(*self.labels, "late").inc()

    @property
    def pool_share(self) -> float:
        """The share of the time this camera keeps a capture process busy (0 if it needs none)."""
        return min(1.0, self.capture_s / self.spec.interval_s) if self.uses_pool and self.reader is None else 0.0

    def _set_up(self, up: bool, frame_at: datetime | None = None) -> None:
        """The camera's gauges, unless this worker has let the camera go (a sample still in
        flight when the camera was handed over must not bring its series back)."""
        with self._gauges:
            if self._forgotten:
                return
            CAMERA_UP.labels(*self.labels).set(1 if up else 0)
            if frame_at is not None:
                LAST_FRAME.labels(*self.labels).set(frame_at.timestamp())

    def forget(self) -> None:
        """This worker no longer samples the camera: stop exporting its gauges, and end
        its persistent reader's process."""
        with self._gauges:
            self._forgotten = True
            forget_camera(*self.labels)
        self.close_reader()

    def close_reader(self) -> None:
        """Kill the persistent reader's process, if any (a capture in flight fails now)."""
        with self._gauges:
            reader = self.reader
        if reader is not None:
            reader.close()

    def _took(self, took: float, *, by_reader: bool) -> None:
        """A capture got a frame in ``took`` seconds. An RTSP or device camera opened per
        sample is switched to a persistent reader when its last SWITCH_AFTER such
        captures each took more than SWITCH_SHARE of the interval."""
        if by_reader or not self.uses_pool:
            return
        self._slow.append(took)
        if len(self._slow) == SWITCH_AFTER and min(self._slow) > SWITCH_SHARE * self.spec.interval_s:
            self._switch_to_reader()

    def _switch_to_reader(self) -> None:
        """The last captures each took more than SWITCH_SHARE of the interval: keep the
        stream open from now on (a process of its own), and say so."""
        took = sorted(self._slow)[len(self._slow) // 2]
        note = f"persistent reader: opening took {took:.1f} s at a {self.spec.interval_s:g} s interval"
        with self._gauges:
            if self._forgotten:
                return
            self.reader, self.reader_note = ReaderProcess(), note
            PERSISTENT_READER.labels(*self.labels).set(1)
        log.warning("camera %d: switched to a %s", self.spec.id, note)
        self._note(note)

    def _note(self, note: str) -> None:
        """A health event that changes no state (how the camera is sampled), under the lease."""
        now = utcnow()
        try:
            with write_transaction(self.factory) as session:
                note_health(session, self._locked_camera(session, now), note, now)
        except LeaseLost:
            pass

    def _sample(self) -> Outcome:
        if time.monotonic() < self._retry_at:
            return Outcome.BACKOFF
        if self._failures > 0:
            RECONNECTS.labels(*self.labels).inc()
        timeout = self.options.capture_timeout_s
        started = time.perf_counter()
        pool_busy = False
        self._captured = False
        reader = self.reader
        took = 0.0
        try:
            got = self.watchdog.run(
                self.spec.id,
                lambda: capture(self.spec.source, self.state, timeout_s=timeout, now=utcnow(), pool=self.pool,
                                tls=self.options.tls, reader=reader),
                timeout + self.options.watchdog_grace_s,
            )
        except CapturePoolBusy:
            pool_busy = True  # no failure, no backoff, health as it was: the camera did nothing wrong
            return Outcome.POOL_BUSY
        except NoNewFrame:
            return Outcome.NO_NEW
        except ImageRefused as exc:
            # What the camera sent, not a camera that is down: no reconnect backoff, as for
            # the frame checks below; the next slot takes the next picture.
            return self._fail(Outcome(exc.reason), redact_text(str(exc)), backoff=False)
        except FrameError as exc:
            return self._fail(Outcome.FAILED, redact_text(str(exc)), backoff=True)
        finally:
            if not pool_busy:
                took = time.perf_counter() - started
                CAPTURE_SECONDS.labels(self.labels[0]).observe(took)
                self.capture_s += CAPTURE_TIME_WEIGHT * (took - self.capture_s)
        self._captured = True
        self._took(took, by_reader=reader is not None)
        check = check_frame(got.image, self._previous_fp, self._repeats)
        if check.fingerprint is not None:
            self._repeats = self._repeats + 1 if is_repeat(check.fingerprint, self._previous_fp) else 0
            self._previous_fp = check.fingerprint
        if check.rejection is not None:
            return self._fail(Outcome(check.rejection.value), f"frame rejected: {check.reason}", backoff=False)
        outcome = self._store(got)
        self._previous = check.thumb
        return outcome

    def _store(self, got: Captured) -> Outcome:
        assert got.image is not None
        stats = frame_stats(got.image, self._previous)
        jpeg = got.jpeg  # a camera's JPEG as it came (ingest.jpeg), else the picture encoded
        if jpeg is None:
            ok, encoded = cv2.imencode(".jpg", got.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                return self._fail(Outcome.FAILED, "cannot encode the frame as JPEG", backoff=False)
            jpeg = encoded.tobytes()
        try:
            stored = self.store.write(self.spec.site_id, self.spec.id, got.captured_at, jpeg)
        except OSError as exc:
            return self._fail(Outcome.FAILED, f"frame store: cannot write the frame: {exc.strerror or exc}", backoff=False)
        now = utcnow()
        try:  # the file is durable (fsync + rename); only now the row
            with write_transaction(self.factory) as session:
                camera = self._locked_camera(session, now)
                session.add(Frame(
                    camera_id=self.spec.id, captured_at=got.captured_at, path=stored.path, sha256=stored.sha256,
                    size_bytes=stored.size_bytes, width=stats.width, height=stats.height,
                    brightness=stats.brightness, contrast=stats.contrast, sharpness=stats.sharpness,
                    is_night=stats.is_night, change_score=stats.change_score,
                ))
                camera.last_frame_at, camera.consecutive_failures, camera.last_error = got.captured_at, 0, None
                set_health(session, camera, CameraHealth.ONLINE, "frame stored", now)
        except LeaseLost:
            self.store.delete(stored.path)
            return Outcome.LEASE_LOST
        except sa.exc.IntegrityError:
            self.store.delete(stored.path)
            return self._fail(Outcome.FAILED, f"a frame at {got.captured_at.isoformat()} is already stored", backoff=False)
        except BaseException:
            self.store.delete(stored.path)  # no file without a row either
            raise
        self._failures, self._retry_at = 0, 0.0
        FRAMES_CAPTURED.labels(*self.labels).inc()
        self._set_up(True, got.captured_at)
        return Outcome.STORED

    def _locked_camera(self, session: Session, now: datetime) -> Camera:
        camera = session.get(Camera, self.spec.id, with_for_update=True)
        if camera is None:
            raise LeaseLost()
        if self.owner is not None and (camera.lease_owner != self.owner or camera.lease_until is None or camera.lease_until <= now):
            raise LeaseLost()
        return camera

    def _fail(self, outcome: Outcome, reason: str, *, backoff: bool) -> Outcome:
        now = utcnow()
        log.warning("camera %d: %s", self.spec.id, reason)
        try:
            with write_transaction(self.factory) as session:
                camera = self._locked_camera(session, now)
                camera.consecutive_failures += 1
                camera.last_error = reason[:1000]
                set_health(session, camera, health_after(camera.consecutive_failures), reason, now)
                self._failures = camera.consecutive_failures
        except LeaseLost:
            return Outcome.LEASE_LOST
        if backoff:
            self._retry_at = time.monotonic() + backoff_s(
                self._failures, base_s=self.spec.interval_s, cap_s=self.options.backoff_cap_s, rng=self.rng
            )
        self._set_up(False)
        return outcome


def sample_camera(factory: sessionmaker[Session], store: FrameStore, camera_id: int) -> Outcome:
    """Sample one camera once, without a lease (tools and tests)."""
    with factory() as session:
        camera = session.get(Camera, camera_id)
        if camera is None or not camera.enabled:
            return Outcome.FAILED
        spec = CameraSpec(camera.id, camera.site_id, camera.source, camera.interval_s)
    return CameraSampler(factory, store, spec).sample()
