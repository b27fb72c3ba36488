"""The inference worker, an overlapped pipeline: batches are claimed and decoded ahead
(up to ``prefetch`` of them), scored on the main thread, and committed by one committing
thread, so claim, file reads, decode, forward and commit all run at the same time."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import torch
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import error_line
from bearwatch.heartbeat import HeartbeatWriter
from bearwatch.schema import Frame, FrameQueueEntry, utcnow
from inference import metrics
from inference.decode import FrameDecoder, PreparedBatch, resolve_preprocess
from inference.heatmap import HEATMAP_FAILURES, HEATMAPS_STORED, HeatmapRow, store_heatmaps
from inference.preprocess import Preprocessor
from inference.queue import Claim, ClaimedFrame, claim_batch, commit_results, release
from inference.registry import active_versions
from inference.runner import RunnerOptions, pick_device, resolve_precision
from inference.scoring import ActiveModel, load_active_models, score_prepared

log = logging.getLogger(__name__)

QUEUE_STATS_EVERY_S = 5.0
DB_RETRY_S = 2.0  # after a lost database connection
MODEL_CHECK_EVERY_S = 10.0  # how soon a newly registered or retired model is noticed
STOP_POLL_S = 0.2  # how often a wait for decoding looks at the stop flag
MAX_PENDING_COMMITS = 2  # scored batches waiting for the committing thread; more and scoring waits
# Frames per batch when none is asked for: a GPU needs large batches to be busy.
DEFAULT_BATCH_SIZE = {"cpu": 64, "cuda": 256}


@dataclass(frozen=True)
class WorkerOptions:
    batch_size: int | None = None  # None: by the device (DEFAULT_BATCH_SIZE)
    lease_s: float = 120.0
    max_attempts: int = 3
    idle_wait_s: float = 0.25  # how long an empty queue is left before looking again
    decode_threads: int = 2
    device: str | None = None  # "cpu", "cuda", "cuda:1"; None picks automatically
    preprocess: str = "auto"  # exact (PIL + fastai), fast (tensor path, nvJPEG on CUDA), auto (by device)
    prefetch: int = 2  # batches claimed and decoding ahead of the one being scored (at least 1)
    precision: str = "auto"  # fp32, fp16, bf16 (autocast); auto: fp16 on CUDA, fp32 on the CPU
    compile: bool = False  # torch.compile the models (compiled while loading, before any frame)


def batch_size_for(requested: int | None, device: torch.device) -> int:
    return requested or DEFAULT_BATCH_SIZE.get(device.type, DEFAULT_BATCH_SIZE["cpu"])


@dataclass(frozen=True)
class _Ahead:
    """A batch claimed ahead: its claim, its decoding, when it was claimed (monotonic)."""

    claim: Claim
    decoding: Future[PreparedBatch]
    started: float


class _Committer:
    """One thread that commits scored batches in the order they were scored (one thread:
    order and at-most-once are those of synchronous commits). A commit that fails with a
    database error is logged and dropped: its frames' lease runs out and they are scored
    again. Any other failure is raised on the main thread by :meth:`reap`."""

    def __init__(self, factory: sessionmaker[Session], max_attempts: int) -> None:
        self.factory, self.max_attempts = factory, max_attempts
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="commit")
        self._pending: deque[tuple[Claim, Future[int]]] = deque()

    def submit(self, claim: Claim, scored: Any, failed: dict[int, str], heatmaps: list[HeatmapRow],
               started: float) -> int:
        """Queue a batch's commit; returns frames committed by earlier commits that finished
        meanwhile (it waits for the oldest while MAX_PENDING_COMMITS are queued)."""
        done = self.reap()
        while len(self._pending) >= MAX_PENDING_COMMITS:
            done += self._settle_oldest()
        self._pending.append((claim, self._pool.submit(self._commit, claim, scored, failed, heatmaps, started)))
        return done

    def reap(self) -> int:
        """Settle the commits that finished; returns the frames they committed."""
        done = 0
        while self._pending and self._pending[0][1].done():
            done += self._settle_oldest()
        return done

    def drain(self) -> int:
        done = 0
        while self._pending:
            done += self._settle_oldest()
        return done

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._pending.clear()

    def _settle_oldest(self) -> int:
        claim, future = self._pending.popleft()
        try:
            return future.result()
        except sa.exc.OperationalError as exc:
            log.warning("could not commit a batch of %d frames (%s); they are scored again when their lease ends",
                        len(claim.frames), error_line(exc))
            return 0

    def _commit(self, claim: Claim, scored: Any, failed: dict[int, str], heatmaps: list[HeatmapRow],
                started: float) -> int:
        done = commit_results(self.factory, claim, scored, failed, self.max_attempts)
        if done < len(claim.frames):
            log.warning("lost the lease on %d frames of a batch; another worker scores them", len(claim.frames) - done)
        self._store_heatmaps(heatmaps)
        metrics.BATCH_SIZE.observe(len(claim.frames))
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        return done

    def _store_heatmaps(self, heatmaps: list[HeatmapRow]) -> None:
        """After the predictions are committed, in a transaction of their own."""
        if not heatmaps:
            return
        try:
            HEATMAPS_STORED.inc(store_heatmaps(self.factory, heatmaps))
        except sa.exc.OperationalError as exc:  # the database restarting: no traceback
            HEATMAP_FAILURES.labels("store").inc(len(heatmaps))
            log.warning("could not store %d heat map(s): database unavailable (%s)", len(heatmaps),
                        error_line(exc))
        except Exception as exc:
            HEATMAP_FAILURES.labels("store").inc(len(heatmaps))
            log.warning("could not store %d heat map(s): %s", len(heatmaps), exc, exc_info=True)


class InferenceWorker:
    def __init__(self, factory: sessionmaker[Session], frames_root: Path, options: WorkerOptions) -> None:
        self.factory = factory
        self.options = options
        self.device = pick_device(options.device)
        self.batch_size = batch_size_for(options.batch_size, self.device)
        resolve_precision(options.precision, self.device)  # a wrong name fails here, not at the first model
        self.runner_options = RunnerOptions(options.precision, options.compile, self.batch_size)
        self.decoder = FrameDecoder(frames_root, options.decode_threads, pin_memory=self.device.type == "cuda",
                                    mode=resolve_preprocess(options.preprocess, self.device), device=self.device)
        # Assembles the batches claimed ahead, one after the other; the decoder's own pool
        # does the per-frame work (one pool for both could deadlock with every thread waiting).
        self._batcher = ThreadPoolExecutor(1, thread_name_prefix="batch")
        # On CUDA the batches are decoded (nvJPEG, resize) on a stream of their own, so that
        # work overlaps the forward pass on the default stream instead of queueing behind it.
        self._decode_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._committer = _Committer(factory, options.max_attempts)
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
            for model in self.models:
                model.runner.configure(self.runner_options)
                if self.options.compile or self.device.type == "cuda":
                    model.runner.warm_up()
            self._loaded_ids = wanted
            log.info("scoring with %s on %s", ", ".join(m.info.name for m in self.models) or "no models", self.device)

    def _models_check_due(self) -> bool:
        return self._loaded_ids is None or time.monotonic() - self._models_checked_at >= MODEL_CHECK_EVERY_S

    def _decoded(self, ahead: _Ahead) -> PreparedBatch:
        """The decoded batch; if decoding broke down as a whole, the claim goes back."""
        try:
            return ahead.decoding.result()
        except BaseException:
            release(self.factory, ahead.claim)
            raise

    def _claim_and_decode(self) -> _Ahead | None:
        started = time.monotonic()
        claim = claim_batch(self.factory, self.batch_size, self.options.lease_s)
        if not claim.frames:
            return None
        preprocessors = {m.runner.preprocessor.key: m.runner.preprocessor for m in self.models}
        return _Ahead(claim, self._batcher.submit(self._prepare, claim.frames, preprocessors), started)

    def _prepare(self, frames: Sequence[ClaimedFrame], preprocessors: Mapping[str, Preprocessor]) -> PreparedBatch:
        """The batch thread's work. On CUDA (untested here: no GPU on the development
        machine) the batch is finished on the decode stream before the scoring stream
        uses it, and its inputs are marked as used there, so the caching allocator does not
        hand their memory to the next decode while the forward may still read it."""
        if self._decode_stream is None:
            return self.decoder.prepare(frames, preprocessors)
        with torch.cuda.stream(self._decode_stream):
            prepared = self.decoder.prepare(frames, preprocessors)
        self._decode_stream.synchronize()
        scoring_stream = torch.cuda.default_stream(self.device)
        for tensor in prepared.inputs.values():
            if tensor.is_cuda:
                tensor.record_stream(scoring_stream)
        return prepared

    def _fill(self, ahead: deque[_Ahead], stop: threading.Event) -> None:
        """Claim batches ahead up to ``prefetch``, unless stopping, the queue is empty, or it
        is time to look for model changes: then the pipeline drains first, so no batch is
        decoded for one set of models and scored by another."""
        while len(ahead) < max(1, self.options.prefetch) and not stop.is_set() and not self._models_check_due():
            job = self._claim_and_decode()
            if job is None:
                return
            ahead.append(job)

    def _score(self, ahead: _Ahead, prepared: PreparedBatch) -> int:
        """Score on this thread and hand the commit to the committing thread; returns frames
        committed by earlier commits that finished meanwhile."""
        heatmaps: list[HeatmapRow] = []
        scored = score_prepared(self.models, prepared, heatmaps)
        for frame_id, error in prepared.errors.items():
            metrics.SCORING_FAILURES.labels(prepared.reasons.get(frame_id, "decode")).inc()  # decode, too_large
            log.warning("frame %d: %s", frame_id, error)
        return self._committer.submit(ahead.claim, scored, prepared.errors, heatmaps, ahead.started)

    def _progressed(self, frames: int) -> None:
        if frames:
            self.heartbeat.beat(progressed=True)

    def run_once(self) -> int:
        """Claim, decode, score and commit one batch synchronously; returns frames committed."""
        job = self._claim_and_decode()
        if job is None:
            return 0
        self._score(job, self._decoded(job))
        done = self._committer.drain()
        self._progressed(done)
        return done

    def run(self, stop: threading.Event) -> None:
        """Score until ``stop`` is set. A batch being scored is finished (a forward pass cannot
        be interrupted) and every scored batch is committed; the one still being decoded,
        and those claimed ahead, go back to the queue unscored, and decoding stops at once:
        SIGTERM ends the worker within about a batch's forward pass and its commit, not
        after the prefetched batches' decoding.
        A lost database connection (a restart) is waited out: the claims in hand are left
        to expire and are scored again, by this worker or another, once it is back."""
        ahead: deque[_Ahead] = deque()
        try:
            while not stop.is_set():
                try:
                    self._step(ahead, stop)
                except sa.exc.OperationalError as exc:
                    log.warning("lost the database connection (%s); trying again in %.0f s",
                                error_line(exc), DB_RETRY_S)
                    self._give_back(ahead)
                    stop.wait(DB_RETRY_S)
            self._give_back(ahead)
            self._progressed(self._committer.drain())
        finally:
            self._give_back(ahead)
            self.close()
            self.heartbeat.stopped()

    def _step(self, ahead: deque[_Ahead], stop: threading.Event) -> None:
        """One turn of the pipeline: score the oldest batch claimed ahead."""
        self.publish_queue_stats()
        self._progressed(self._committer.reap())
        if not ahead:
            if self._models_check_due():
                self.refresh_models()
            if not self.models:
                stop.wait(self.options.idle_wait_s * 8)
                return
        self._fill(ahead, stop)
        if not ahead:
            stop.wait(self.options.idle_wait_s)
            return
        if not self._decode_done_unless_stopped(ahead[0].decoding, stop):
            return  # run gives every claim back
        current = ahead.popleft()
        prepared = self._decoded(current)
        self._fill(ahead, stop)  # the next batches decode while this one is scored
        self._progressed(self._score(current, prepared))

    def _give_back(self, ahead: deque[_Ahead]) -> None:
        """Cancel the decoding of the batches claimed ahead and release their claims."""
        while ahead:
            job = ahead.popleft()
            job.decoding.cancel()
            with contextlib.suppress(sa.exc.OperationalError):  # else its lease runs out
                release(self.factory, job.claim)

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
        self._committer.close()

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
