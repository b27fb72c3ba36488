"""The inference worker: claim a batch, decode each frame once, score it with every
active model, commit — while the next batch is already being decoded."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.heartbeat import HeartbeatWriter
from bearwatch.schema import Frame, FrameQueueEntry, utcnow
from inference import metrics
from inference.decode import FrameDecoder, PreparedBatch
from inference.heatmap import HEATMAP_FAILURES, HEATMAPS_STORED, HeatmapRow, store_heatmaps
from inference.queue import Claim, claim_batch, commit_results, release
from inference.registry import active_versions
from inference.runner import pick_device
from inference.scoring import ActiveModel, load_active_models, score_prepared

log = logging.getLogger(__name__)

# A batch claimed ahead: the claim, its decoding, when it was claimed (monotonic).
_Ahead = tuple[Claim, Future[PreparedBatch], float]

QUEUE_STATS_EVERY_S = 5.0
DB_RETRY_S = 2.0  # after a lost database connection
MODEL_CHECK_EVERY_S = 10.0  # how soon a newly registered or retired model is noticed


@dataclass(frozen=True)
class WorkerOptions:
    batch_size: int = 64
    lease_s: float = 120.0
    max_attempts: int = 3
    idle_wait_s: float = 0.25  # how long an empty queue is left before looking again
    decode_threads: int = 2
    device: str | None = None  # "cpu", "cuda", "cuda:1"; None picks automatically


STOP_POLL_S = 0.2  # how often a wait for decoding looks at the stop flag


class InferenceWorker:
    def __init__(self, factory: sessionmaker[Session], frames_root: Path, options: WorkerOptions) -> None:
        self.factory = factory
        self.options = options
        self.device = pick_device(options.device)
        self.decoder = FrameDecoder(frames_root, options.decode_threads, pin_memory=self.device.type == "cuda")
        # Assembles the next batch in the background; the decoder's own pool does the
        # per-frame work (one pool for both could deadlock with every thread waiting).
        self._batcher = ThreadPoolExecutor(1, thread_name_prefix="batch")
        self.models: list[ActiveModel] = []
        self._loaded_ids: set[int] | None = None
        self._models_checked_at = 0.0
        self._stats_at = 0.0
        self.heartbeat = HeartbeatWriter(factory, "inference")

    def refresh_models(self) -> None:
        """Reload when a model was registered or retired since the last look."""
        self._models_checked_at = time.monotonic()
        with self.factory() as session:
            wanted = {v.id for v in active_versions(session)}
        if wanted != self._loaded_ids:
            self.models = load_active_models(self.factory, self.device)
            self._loaded_ids = wanted
            log.info("scoring with %s on %s", ", ".join(m.info.name for m in self.models) or "no models", self.device)

    def _models_check_due(self) -> bool:
        return self._loaded_ids is None or time.monotonic() - self._models_checked_at >= MODEL_CHECK_EVERY_S

    def _decoded(self, claim: Claim, future: Future[PreparedBatch]) -> PreparedBatch:
        """The decoded batch; if decoding broke down as a whole, the claim goes back."""
        try:
            return future.result()
        except BaseException:
            release(self.factory, claim)
            raise

    def _claim_and_decode(self) -> tuple[Claim, Future[PreparedBatch]] | None:
        claim = claim_batch(self.factory, self.options.batch_size, self.options.lease_s)
        if not claim.frames:
            return None
        preprocessors = {m.runner.preprocessor.key: m.runner.preprocessor for m in self.models}
        return claim, self._batcher.submit(self.decoder.prepare, claim.frames, preprocessors)

    def _finish(self, claim: Claim, prepared: PreparedBatch, started: float) -> int:
        heatmaps: list[HeatmapRow] = []
        rows = score_prepared(self.models, prepared, heatmaps)
        if prepared.errors:
            for frame_id, error in prepared.errors.items():
                metrics.SCORING_FAILURES.labels(prepared.reasons.get(frame_id, "decode")).inc()  # decode, too_large
                log.warning("frame %d: %s", frame_id, error)
        done = commit_results(self.factory, claim, rows, prepared.errors, self.options.max_attempts)
        if done < len(claim.frames):
            log.warning("lost the lease on %d frames of a batch; another worker scores them", len(claim.frames) - done)
        self._store_heatmaps(heatmaps)
        metrics.BATCH_SIZE.observe(len(claim.frames))
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        self.heartbeat.beat(progressed=True)
        return done

    def _store_heatmaps(self, heatmaps: list[HeatmapRow]) -> None:
        """After the predictions are committed, in a transaction of their own."""
        if not heatmaps:
            return
        try:
            HEATMAPS_STORED.inc(store_heatmaps(self.factory, heatmaps))
        except Exception as exc:
            HEATMAP_FAILURES.labels("store").inc(len(heatmaps))
            log.warning("could not store %d heat map(s): %s", len(heatmaps), exc, exc_info=True)

    def run_once(self) -> int:
        """Claim, decode and score one batch synchronously; returns frames committed."""
        started = time.monotonic()
        job = self._claim_and_decode()
        if job is None:
            return 0
        claim, future = job
        return self._finish(claim, self._decoded(claim, future), started)

    def run(self, stop: threading.Event) -> None:
        """Score until ``stop`` is set. A batch being scored is finished (a forward pass cannot
        be interrupted); one still being decoded, and the one prefetched, go back to the queue
        unscored, and decoding stops at once: SIGTERM ends the worker within about a batch's
        forward pass, not after two batches' decoding.
        A lost database connection (a restart) is waited out: the claims in hand are left
        to expire and are scored again, by this worker or another, once it is back."""
        ahead: _Ahead | None = None
        try:
            while not stop.is_set():
                current, ahead = ahead, None
                try:
                    ahead = self._step(current, stop)
                except sa.exc.OperationalError as exc:
                    log.warning("lost the database connection (%s); trying again in %.0f s",
                                str(exc.orig or exc).strip().splitlines()[0], DB_RETRY_S)
                    stop.wait(DB_RETRY_S)
        finally:
            if ahead is not None:
                ahead[1].cancel()
                try:
                    release(self.factory, ahead[0])
                except sa.exc.OperationalError:
                    pass  # its lease runs out instead
            self.close()
            self.heartbeat.stopped()

    def _step(self, ahead: _Ahead | None, stop: threading.Event) -> _Ahead | None:
        """One turn of the pipeline; returns the batch claimed ahead, if any."""
        self.publish_queue_stats()
        if ahead is None:
            if self._models_check_due():
                self.refresh_models()
            if not self.models:
                stop.wait(self.options.idle_wait_s * 8)
                return None
            started = time.monotonic()
            job = self._claim_and_decode()
            if job is None:
                stop.wait(self.options.idle_wait_s)
                return None
            ahead = (*job, started)
        claim, future, started = ahead
        next_ahead: _Ahead | None = None
        if not self._decode_done_unless_stopped(future, stop):
            future.cancel()
            release(self.factory, claim)
            return None
        prepared = self._decoded(claim, future)
        # Decode the next batch while this one is scored, unless it is time to look
        # for model changes: then the pipeline drains first, so no batch is
        # decoded for one set of models and scored by another.
        if not stop.is_set() and not self._models_check_due():
            next_started = time.monotonic()
            job = self._claim_and_decode()
            next_ahead = (*job, next_started) if job else None
        try:
            self._finish(claim, prepared, started)
        except BaseException:
            if next_ahead is not None:
                next_ahead[1].cancel()
                with contextlib.suppress(sa.exc.OperationalError):  # else its lease runs out
                    release(self.factory, next_ahead[0])
            raise
        return next_ahead

    @staticmethod
    def _decode_done_unless_stopped(future: Future[PreparedBatch], stop: threading.Event) -> bool:
        """Wait for the batch's decoding; False as soon as ``stop`` is set while it runs."""
        while not wait([future], timeout=STOP_POLL_S).done:
            if stop.is_set():
                return False
        return True

    def close(self) -> None:
        # The decoder first: its queued frames are cancelled, so a batch being assembled
        # fails at once (CancelledError) instead of decoding to the end.
        self.decoder.close()
        self._batcher.shutdown(wait=True, cancel_futures=True)

    def publish_queue_stats(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._stats_at < QUEUE_STATS_EVERY_S:
            return
        self._stats_at = time.monotonic()
        # The queue lists exactly the frames waiting (pending or claimed).
        waiting = sa.select(sa.func.count(), sa.func.min(Frame.captured_at)).join(
            FrameQueueEntry, FrameQueueEntry.frame_id == Frame.id
        )
        with self.factory() as session:
            depth, oldest = session.execute(waiting).one()
        metrics.QUEUE_DEPTH.set(depth or 0)
        self.heartbeat.beat(waiting=depth or 0)
        metrics.OLDEST_UNSCORED_AGE.set((utcnow() - oldest).total_seconds() if oldest else 0.0)
