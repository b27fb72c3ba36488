"""The ingest service: APScheduler 3.x jobs sample the cameras this worker leases.

One interval job per camera (in-memory job store; max_instances=1 so a camera never has
two samples in flight; coalesce=True so missed runs collapse into one; a misfire grace
of one interval, so a late run is skipped rather than bunched up). Captures run under a
watchdog with hard deadlines, so a stalled camera holds one pool thread for at most its
deadline and never delays another camera or the scheduler. A separate single-thread
executor renews leases and picks up added, changed, disabled or taken-over cameras.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import error_line, write_transaction
from bearwatch.schema import utcnow
from ingest.capture_pool import CapturePool, auto_pool_size
from ingest.leases import WorkerPresence, claim_cameras, new_worker_id, release_cameras
from ingest.sampler import CameraSampler, CameraSpec, SamplerOptions, Watchdog
from ingest.store import FrameStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestOptions:
    lease_s: float = 30.0  # a dead worker's cameras are taken over within this time
    threads: int = 32  # capture threads; a stalled camera holds one for its deadline at most
    # Child processes for RTSP/device captures (killed past their deadline); None: sized from
    # the cameras held and their measured capture times (capture_pool.auto_pool_size).
    capture_processes: int | None = None
    sampler: SamplerOptions = field(default_factory=SamplerOptions)


class IngestService:
    def __init__(
        self, factory: sessionmaker[Session], store: FrameStore, options: IngestOptions = IngestOptions(),
        *, owner: str | None = None,
    ) -> None:
        self.factory, self.store, self.options = factory, store, options
        self.owner = owner or new_worker_id()
        self.watchdog = Watchdog()
        self.pool = CapturePool(options.capture_processes or 1)
        self.samplers: dict[int, CameraSampler] = {}
        self._lock = threading.Lock()
        self._rng = random.Random()
        self.samples_done = 0
        # Kept to wait on them one by one at stop() (the scheduler's shutdown waits on both).
        self._capture_threads, self._lease_thread = ThreadPoolExecutor(options.threads), ThreadPoolExecutor(1)
        self.scheduler = BackgroundScheduler(
            executors={"default": self._capture_threads, "leases": self._lease_thread},
            job_defaults={"max_instances": 1, "coalesce": True},
            timezone="UTC",
        )

    def start(self) -> IngestService:
        self.presence = WorkerPresence(self.factory.kw["bind"])
        self.scheduler.start()
        self.reconcile()
        self.scheduler.add_job(
            self.reconcile, "interval", seconds=max(0.2, self.options.lease_s / 3), id="leases",
            executor="leases", misfire_grace_time=max(1, int(self.options.lease_s)),
        )
        self.scheduler.add_listener(self._missed, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self.scheduler.add_listener(self._sampled, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        return self

    def _sampled(self, event: JobEvent) -> None:
        if event.job_id.startswith("camera-"):
            self.samples_done += 1  # progress, whatever the outcome (the heartbeat reads it)

    def busy_cameras(self, within_s: float = 60.0) -> int:
        """Cameras held that are due at least once a minute: work that must progress."""
        with self._lock:
            return sum(1 for sampler in self.samplers.values() if sampler.spec.interval_s <= within_s)

    def _missed(self, event: JobEvent) -> None:
        """A slot with no sample: the previous one still ran, or the run came too late."""
        sampler = self.samplers.get(int(event.job_id.split("-", 1)[1])) if event.job_id.startswith("camera-") else None
        if sampler is not None:
            sampler.slot_missed(still_running=event.code == EVENT_JOB_MAX_INSTANCES)

    def reconcile(self) -> None:
        """Renew leases, claim free cameras, and make the jobs match what we own."""
        try:
            workers = self.presence.count()
            with write_transaction(self.factory) as session:
                specs = claim_cameras(session, self.owner, lease_s=self.options.lease_s, now=utcnow(), workers=workers)
        except sa.exc.OperationalError as exc:  # the database restarting: keep sampling, try again next beat
            log.warning("could not renew camera leases: database unavailable (%s)",
                        error_line(exc))
            return
        except Exception:  # a database hiccup: keep sampling, try again at the next beat
            log.exception("could not renew camera leases")
            return
        wanted = {spec.id: spec for spec in specs}
        with self._lock:
            for camera_id in list(self.samplers):
                if wanted.get(camera_id) != self.samplers[camera_id].spec:
                    self.scheduler.remove_job(f"camera-{camera_id}")
                    # handed over, disabled or changed: no stale camera_up from this worker
                    self.samplers.pop(camera_id).forget()
            for camera_id, spec in wanted.items():
                if camera_id not in self.samplers:
                    self._add(spec)
            if self.options.capture_processes is None:
                self.pool.resize(auto_pool_size([s.pool_share for s in self.samplers.values() if s.uses_pool]))

    def _add(self, spec: CameraSpec) -> None:
        sampler = CameraSampler(
            self.factory, self.store, spec, options=self.options.sampler, owner=self.owner, watchdog=self.watchdog, pool=self.pool,
        )
        self.samplers[spec.id] = sampler
        # After a takeover, not before the slot after the previous owner's last sample.
        first = utcnow() + timedelta(seconds=self._rng.uniform(0, min(spec.interval_s, 1.0)))
        if sampler.last_frame_at is not None:
            first = max(first, sampler.last_frame_at + timedelta(seconds=spec.interval_s))
        self.scheduler.add_job(
            sampler.sample, "interval", seconds=spec.interval_s, id=f"camera-{spec.id}",
            max_instances=1, coalesce=True, misfire_grace_time=max(1, int(spec.interval_s)), next_run_time=first,
        )
        log.info("sampling camera %d every %gs", spec.id, spec.interval_s)

    def cameras(self) -> list[int]:
        with self._lock:
            return sorted(self.samplers)

    def stop(self) -> None:
        """Stop sampling and give the cameras back at once, captures in flight or not, so
        another worker takes them now and not after a stalled camera's deadline (and before
        a supervisor's patience runs out). A capture still running can no longer store
        anything: frames and failures are committed only under the camera's lease."""
        self.scheduler.shutdown(wait=False)
        self._lease_thread.shutdown(wait=True)  # no lease renewal or claim after the release
        try:
            with write_transaction(self.factory) as session:
                released = release_cameras(session, self.owner)
            log.info("released %d camera leases", released)
        except Exception:
            log.exception("could not release camera leases; they expire by themselves")
        self.pool.close()  # capture children killed: RTSP and device captures end now
        with self._lock:
            held = list(self.samplers.values())
        for sampler in held:
            sampler.close_reader()  # persistent readers' processes too
        self._capture_threads.shutdown(wait=True)  # the others end within their deadline
        with self._lock:
            for sampler in self.samplers.values():
                sampler.forget()
        self.presence.close()


def start_ingest(
    factory: sessionmaker[Session], store: FrameStore, options: IngestOptions = IngestOptions()
) -> IngestService:
    return IngestService(factory, store, options).start()
