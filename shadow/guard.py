"""The guard: demotes a site in limited or expanded to manual by itself (design.md
section 5) when
- its alert rate leaves [alert_ratio_low, alert_ratio_high] of the manual baseline:
  an anytime-valid e-process on the conditional binomial (shadow.sequential.ratio_decision,
  a mixture SPRT), so the chance of a false demotion over the whole stage stays at most
  guard_significance however often the guard looks,
- a drift alarm fired since the site entered its stage,
- the rollout model file is missing or its sha256 no longer matches the registry,
- its cameras went dark: every enabled camera offline, or no usable (non-black) frame
  from any of them for ``dark_after_s``.
The decision is a pure function of the findings; :func:`run_guard` gathers them with
the site row locked and writes the ledger row (actor ``guard``, the findings as
evidence). :func:`run_guard_all` checks the model files first, outside the write
transactions (on SQLite one blocks ingest and inference), and a file is hashed in full
only the first time this process sees it and when its size, mtime, ctime or inode
changed since (:data:`MODEL_FILES`): a model is tens of MB and the guard looks every
minute.
"""

from __future__ import annotations

import logging
import math
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import GUARD
from bearwatch.db import write_transaction
from bearwatch.files import sha256_file
from bearwatch.park_file import Thresholds
from bearwatch.schema import Camera, CameraHealth, DriftEvent, Frame, ModelVersion, Site, Stage
from shadow import metrics
from shadow.alert_rates import alert_rate_comparison
from shadow.gates import rate_data
from shadow.periods import thresholds_of, usable_frame
from shadow.rollout import record_stage_change
from shadow.sequential import RatioDecision, ratio_decision
from shadow.stats import RateRatio

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuardFindings:
    rate: RateRatio | None  # None: no baseline or no current camera-hours
    drift_alarm_ids: tuple[int, ...]  # drift events with an alarm since stage_since
    model_problem: str | None  # None: the file is there and its hash matches
    cameras_enabled: int
    cameras_offline: int
    last_usable_frame_at: datetime | None
    dark_for_s: float | None  # seconds since the last usable frame (or since stage_since)


@dataclass(frozen=True)
class GuardDecision:
    demote: bool
    reasons: tuple[str, ...]
    evidence: dict[str, Any] = field(default_factory=dict)
    causes: tuple[str, ...] = ()  # alert_rate, drift, model_file, cameras_dark


def decide(f: GuardFindings, t: Thresholds) -> GuardDecision:
    """Pure: whether the findings call for a demotion, and why."""
    reasons: list[str] = []
    causes: list[str] = []
    evidence: dict[str, Any] = {"thresholds": {k: getattr(t, k) for k in (
        "alert_ratio_low", "alert_ratio_high", "guard_significance", "dark_after_s")}}
    if f.rate is not None:
        test = rate_decision(f.rate, t)
        evidence["alert_rate"] = {**rate_data(f.rate), "e_up": test.e_up, "e_down": test.e_down, "e_level": test.level,
                                  "method": "mixture SPRT on the conditional binomial of episodes (anytime-valid)"}
        if test.outside:
            word = "up" if test.up else "down"
            e = test.e_up if test.up else test.e_down
            causes.append("alert_rate")
            reasons.append(
                f"alert rate {word}: episode ratio {f.rate.ratio:.2f} to the manual baseline is outside "
                f"[{t.alert_ratio_low:g}, {t.alert_ratio_high:g}] in alerts ([{f.rate.low:.2f}, {f.rate.high:.2f}] in "
                f"episodes) (e-value {e:.3g} >= {test.level:g}, "
                f"anytime-valid at {t.guard_significance:g} over the stage)"
            )
    if f.drift_alarm_ids:
        evidence["drift_event_ids"] = list(f.drift_alarm_ids)
        causes.append("drift")
        reasons.append(f"drift alarm(s) since the stage began (drift event {', '.join(map(str, f.drift_alarm_ids))})")
    if f.model_problem:
        evidence["model_problem"] = f.model_problem
        causes.append("model_file")
        reasons.append(f.model_problem)
    evidence["cameras"] = {"enabled": f.cameras_enabled, "offline": f.cameras_offline,
                           "last_usable_frame_at": f.last_usable_frame_at.isoformat() if f.last_usable_frame_at else None,
                           "dark_for_s": f.dark_for_s}
    if f.cameras_enabled and f.cameras_offline == f.cameras_enabled:
        causes.append("cameras_dark")
        reasons.append(f"cameras dark: all {f.cameras_enabled} enabled cameras offline")
    elif f.dark_for_s is not None and f.dark_for_s >= t.dark_after_s:
        causes.append("cameras_dark")
        reasons.append(f"cameras dark: no usable frame from any camera for {f.dark_for_s / 60:.0f} min")
    return GuardDecision(bool(reasons), tuple(reasons), evidence, tuple(causes))


def rate_decision(rate: RateRatio, t: Thresholds) -> RatioDecision:
    """The e-process verdict on the stage's cumulative episode counts (valid at every
    look), against the band the comparison moved to episodes (rate.low, rate.high)."""
    return ratio_decision(rate.x1, rate.t1, rate.x0, rate.t0, low=rate.low, high=rate.high, alpha=t.guard_significance)


StatKey = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device


def _stat_key(path: Path) -> StatKey | None:
    """None: no regular file at ``path``."""
    try:
        st = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


class FileHashes:
    """The sha256 of files, kept in this process by path and computed again only when
    the file's size, mtime, ctime or inode changed. ctime and inode catch a file swapped
    in place even with the same size and mtime (setting the mtime back sets the ctime
    to now; a rename brings another inode)."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[StatKey, str]] = {}
        self._lock = threading.Lock()
        self.full_hashes = 0  # files read in full, for tests and benchmarks

    def sha256(self, path: Path) -> str | None:
        """The file's sha256; None when there is no regular file at ``path``."""
        key = _stat_key(path)
        if key is None:
            return None
        with self._lock:
            known = self._known.get(str(path))
        if known is not None and known[0] == key:
            return known[1]
        try:
            digest = sha256_file(path)
        except OSError:  # removed meanwhile
            return None
        with self._lock:
            self.full_hashes += 1
            if _stat_key(path) == key:  # not changed while it was read
                self._known[str(path)] = (key, digest)
            else:
                self._known.pop(str(path), None)
        return digest


MODEL_FILES = FileHashes()


def model_problem(version: ModelVersion | None) -> str | None:
    if version is None:
        return "the site has no rollout model"
    path = Path(version.path)
    digest = MODEL_FILES.sha256(path)
    if digest is None:
        return f"rollout model {version.name} (id {version.id}): file {path} is missing"
    if digest != version.sha256:
        return f"rollout model {version.name} (id {version.id}): file changed since registration (sha256 mismatch)"
    return None


def gather_findings(session: Session, site: Site, now: datetime, t: Thresholds,
                    model_problems: Mapping[int, str | None] | None = None) -> GuardFindings:
    """``model_problems``: model_problem by model version id, found before the
    transaction; a model not in it (or None) is checked here."""
    comparison = alert_rate_comparison(session, site, now, t)
    alarms = tuple(session.scalars(
        sa.select(DriftEvent.id).where(DriftEvent.site_id == site.id, DriftEvent.alarm,
                                       DriftEvent.created_at >= site.stage_since, DriftEvent.created_at <= now)
        .order_by(DriftEvent.id)
    ))
    health = session.scalars(sa.select(Camera.health).where(Camera.site_id == site.id, Camera.enabled)).all()
    # Each camera's newest usable frame, one step back along its (camera_id, captured_at)
    # index: a max over the site's joined frames read every frame of the park (1M at 1M).
    newest_of_camera = (
        sa.select(Frame.captured_at)
        .where(Frame.camera_id == Camera.id, Frame.captured_at <= now, usable_frame())
        .order_by(Frame.captured_at.desc()).limit(1)
        .scalar_subquery()
    )
    last = session.scalar(sa.select(sa.func.max(newest_of_camera)).where(Camera.site_id == site.id, Camera.enabled))
    since = max(last, site.stage_since) if last else site.stage_since
    model_id = site.rollout_model_id
    if model_problems is not None and model_id is not None and model_id in model_problems:
        problem = model_problems[model_id]
    else:
        problem = model_problem(session.get(ModelVersion, model_id) if model_id else None)
    return GuardFindings(
        rate=comparison.test if comparison else None, drift_alarm_ids=alarms, model_problem=problem,
        cameras_enabled=len(health), cameras_offline=sum(h is CameraHealth.OFFLINE for h in health),
        last_usable_frame_at=last, dark_for_s=(now - since) / timedelta(seconds=1) if health else None,
    )


@dataclass(frozen=True)
class GuardResult:
    site: str
    stage: Stage  # the stage the guard found
    demoted: bool
    reasons: tuple[str, ...]
    stage_change_id: int | None
    evidence: dict[str, Any] = field(default_factory=dict)  # what the guard looked at


def run_guard(session: Session, site: Site, now: datetime,
              model_problems: Mapping[int, str | None] | None = None) -> GuardResult:
    """Check one site and demote it to manual when the findings call for it. Locks the
    site row (FOR UPDATE on PostgreSQL; on SQLite the caller's BEGIN IMMEDIATE).
    ``model_problems``: see gather_findings."""
    locked = session.scalar(sa.select(Site).where(Site.id == site.id).with_for_update())
    assert locked is not None
    if locked.stage is Stage.MANUAL:
        metrics.ALERT_RATE_BREACH.labels(str(locked.id)).set(0)  # no rollout to guard
        return GuardResult(locked.name, locked.stage, False, (), None)
    t = thresholds_of(locked)
    findings = gather_findings(session, locked, now, t, model_problems)
    if findings.rate is not None and math.isfinite(findings.rate.ratio):
        metrics.ALERT_RATE_RATIO.labels(str(locked.id)).set(findings.rate.ratio)
    decision = decide(findings, t)
    metrics.ALERT_RATE_BREACH.labels(str(locked.id)).set(1 if "alert_rate" in decision.causes else 0)
    if not decision.demote:
        return GuardResult(locked.name, locked.stage, False, (), None, decision.evidence)
    found = locked.stage
    change = record_stage_change(session, locked, Stage.MANUAL, actor=GUARD.name, reason="guard: " + "; ".join(decision.reasons),
                                 now=now, evidence=decision.evidence)
    for cause in decision.causes:
        metrics.count_on_commit(session, metrics.GUARD_DEMOTIONS.labels(str(locked.id), cause))
    return GuardResult(locked.name, found, True, decision.reasons, change.id, decision.evidence)


def run_guard_all(factory: sessionmaker[Session], now: datetime) -> list[GuardResult]:
    """One pass over every site in limited or expanded, one transaction per site; the
    rollout model files are checked before, outside any transaction. A site whose check
    fails (not the database: that ends the pass) is logged and counted
    (``bearwatch_guard_failures_total``) and the pass goes on to the other sites: one
    site's bad settings or data must not leave every site unguarded."""
    with factory() as session:
        rows = session.execute(
            sa.select(Site.id, ModelVersion).outerjoin(ModelVersion, ModelVersion.id == Site.rollout_model_id)
            .where(Site.stage != Stage.MANUAL).order_by(Site.name)
        ).all()
    problems = {version.id: model_problem(version) for version in {v for _, v in rows if v is not None}}
    results = []
    for site_id, _ in rows:
        try:
            with write_transaction(factory) as session:
                site = session.get(Site, site_id)
                if site is not None:
                    results.append(run_guard(session, site, now, problems))
        except sa.exc.DBAPIError:
            raise
        except Exception:
            metrics.GUARD_FAILURES.labels(str(site_id)).inc()
            log.exception("guard: site %d could not be checked; it is checked again next pass", site_id)
    return results
