"""Drift: the current window against a reference window (design.md section 1).

Reference: the window ops chose for the site (sites.drift_reference_start/_end), else
the site's latest manual period (while in manual, without the current window). Current:
the last ``drift_window_hours``. Compared, on the site's rollout model:
- image statistics: brightness and sharpness (two-sample KS), night share (Fisher);
- the positive-score distribution (KS) and the flag rate (Fisher);
- the embeddings (MMD with an RBF kernel and a permutation p-value, shadow.stats);
- the share of frames over the out-of-domain threshold (ood_score > 1, inference.ood).
A metric alarms when it is significant at ``drift_significance`` AND its effect reaches
a minimum (KS D, share change, squared MMD): with thousands of frames every tiny
difference is significant, and the effect threshold keeps the alarm for real shifts.

Camera health comes first: frames of cameras now offline or disabled, black or
near-uniform frames (a dark, covered or broken camera), and repeats of a byte-identical
frame from the same camera (a frozen stream) are left out of both windows, so a camera
going dark or freezing is a camera problem (the guard's), not drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.errors import ConfigError
from bearwatch.park_file import Thresholds
from bearwatch.schema import Camera, CameraHealth, DriftEvent, Frame, Prediction, Site, Stage
from shadow import metrics
from shadow.periods import latest_manual_period, thresholds_of, usable_frame
from shadow.stats import ks_compare, mmd_test, share_compare

OOD_THRESHOLD = 1.0  # inference.ood: 1.0 is as far as the farthest 1% of the reference


@dataclass(frozen=True)
class WindowData:
    brightness: np.ndarray
    sharpness: np.ndarray
    night: np.ndarray  # bool
    scores: np.ndarray  # positive scores of frames with a prediction
    flagged: np.ndarray  # bool
    ood: np.ndarray  # out-of-domain scores (frames that have one)
    embeddings: np.ndarray  # (n, d)

    @property
    def frames(self) -> int:
        return len(self.brightness)


def _ks_metric(ref: np.ndarray, cur: np.ndarray, t: Thresholds) -> dict[str, Any] | None:
    if len(ref) < 2 or len(cur) < 2:
        return None
    r = ks_compare(ref, cur)
    return {"test": "ks", "statistic": r.statistic, "p_value": r.p_value, "reference": r.reference, "current": r.current,
            "min_effect": t.drift_min_ks, "alarm": r.p_value < t.drift_significance and r.statistic >= t.drift_min_ks,
            "n_reference": len(ref), "n_current": len(cur)}


def _share_metric(ref: np.ndarray, cur: np.ndarray, t: Thresholds) -> dict[str, Any] | None:
    if len(ref) == 0 or len(cur) == 0:
        return None
    r = share_compare(int(ref.sum()), len(ref), int(cur.sum()), len(cur))
    return {"test": "fisher", "statistic": r.statistic, "p_value": r.p_value, "reference": r.reference,
            "current": r.current, "min_effect": t.drift_min_share_change,
            "alarm": r.p_value < t.drift_significance and abs(r.statistic) >= t.drift_min_share_change,
            "n_reference": len(ref), "n_current": len(cur)}


def drift_metrics(ref: WindowData, cur: WindowData, t: Thresholds, *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Every metric that has data in both windows: its numbers and whether it alarms."""
    metrics: dict[str, dict[str, Any] | None] = {
        "brightness": _ks_metric(ref.brightness, cur.brightness, t),
        "sharpness": _ks_metric(ref.sharpness, cur.sharpness, t),
        "night_share": _share_metric(ref.night, cur.night, t),
        "positive_score": _ks_metric(ref.scores, cur.scores, t),
        "flag_rate": _share_metric(ref.flagged, cur.flagged, t),
        "ood_share": _share_metric(ref.ood > OOD_THRESHOLD, cur.ood > OOD_THRESHOLD, t),
    }
    if len(ref.embeddings) >= 2 and len(cur.embeddings) >= 2 and ref.embeddings.shape[1] == cur.embeddings.shape[1]:
        m = mmd_test(ref.embeddings, cur.embeddings, permutations=200, max_n=300, seed=seed)
        metrics["embedding_mmd"] = {
            "test": "mmd", "statistic": m.mmd2, "p_value": m.p_value, "bandwidth": m.bandwidth,
            "min_effect": t.drift_min_mmd, "alarm": m.p_value < t.drift_significance and m.mmd2 >= t.drift_min_mmd,
            "n_reference": m.n_x, "n_current": m.n_y, "permutations": m.permutations,
        }
    return {k: v for k, v in metrics.items() if v is not None}


def window_data(session: Session, site: Site, start: datetime, end: datetime) -> WindowData:
    """Usable frames of the site's cameras that are not offline or disabled, in [start, end)."""
    model_id = site.rollout_model_id if site.rollout_model_id is not None else -1
    rows = session.execute(
        sa.select(Frame.camera_id, Frame.sha256, Frame.brightness, Frame.sharpness, Frame.is_night,
                  Prediction.positive_score, Prediction.flagged, Prediction.ood_score, Prediction.embedding)
        .join(Camera, Camera.id == Frame.camera_id)
        .outerjoin(Prediction, sa.and_(Prediction.frame_id == Frame.id, Prediction.model_version_id == model_id))
        .where(Camera.site_id == site.id, Camera.enabled,
               Camera.health.not_in([CameraHealth.OFFLINE, CameraHealth.DISABLED]),
               Frame.captured_at >= start, Frame.captured_at < end, usable_frame())
        .order_by(Frame.camera_id, Frame.captured_at)
    ).all()
    # A frozen camera sends the same bytes again and again: count each image once.
    seen: set[tuple[int, str]] = set()
    fresh = []
    for r in rows:
        if (r.camera_id, r.sha256) not in seen:
            seen.add((r.camera_id, r.sha256))
            fresh.append(r)
    rows = fresh
    scored = [r for r in rows if r.positive_score is not None]
    embs = [np.frombuffer(r.embedding, np.float16).astype(np.float32) for r in scored if r.embedding]
    dims = {len(e) for e in embs}
    return WindowData(
        brightness=np.array([r.brightness for r in rows if r.brightness is not None], float),
        sharpness=np.array([r.sharpness for r in rows if r.sharpness is not None], float),
        night=np.array([bool(r.is_night) for r in rows if r.is_night is not None], bool),
        scores=np.array([r.positive_score for r in scored], float),
        flagged=np.array([bool(r.flagged) for r in scored], bool),
        ood=np.array([r.ood_score for r in scored if r.ood_score is not None], float),
        embeddings=np.vstack(embs) if embs and len(dims) == 1 else np.zeros((0, 0), np.float32),
    )


def set_reference_window(site: Site, window: tuple[datetime, datetime] | None) -> None:
    """The window drift is measured against from now on; None: back to the default, the
    latest manual period (reference_window)."""
    if window is not None and window[1] <= window[0]:
        raise ConfigError("a drift reference window ends after it starts")
    site.drift_reference_start, site.drift_reference_end = window if window is not None else (None, None)


def reference_window(session: Session, site: Site, now: datetime, t: Thresholds) -> tuple[datetime, datetime] | None:
    if site.drift_reference_start is not None and site.drift_reference_end is not None:
        return site.drift_reference_start, site.drift_reference_end
    period = latest_manual_period(session, site, now)
    if period is None:
        return None
    end = period.end
    if site.stage is Stage.MANUAL:
        end = min(end, now - timedelta(hours=t.drift_window_hours))
    return (period.start, end) if end > period.start else None


@dataclass(frozen=True)
class DriftCheck:
    site: str
    window: tuple[datetime, datetime]
    reference: tuple[datetime, datetime] | None
    metrics: dict[str, dict[str, Any]]
    alarm: bool
    detail: str
    event_id: int | None  # the stored drift_events row; None when there was too little data


def compute_drift(session: Session, site: Site, now: datetime) -> DriftCheck:
    """Read-only: the drift numbers for ``site`` at ``now`` (nothing stored)."""
    t = thresholds_of(site)
    window = (now - timedelta(hours=t.drift_window_hours), now)
    reference = reference_window(session, site, now, t)
    if reference is None:
        return DriftCheck(site.name, window, None, {}, False, "no reference window yet (no manual period before the current window)", None)
    ref = window_data(session, site, *reference)
    cur = window_data(session, site, *window)
    if ref.frames < t.drift_min_frames or cur.frames < t.drift_min_frames:
        return DriftCheck(site.name, window, reference, {}, False,
                          f"too few usable frames to compare (reference {ref.frames}, current {cur.frames}, "
                          f"needs {t.drift_min_frames} each)", None)
    metrics = drift_metrics(ref, cur, t, seed=int(now.timestamp()) % (2**31))
    alarming = sorted(k for k, v in metrics.items() if v["alarm"])
    detail = f"drift in {', '.join(alarming)}" if alarming else "no drift"
    return DriftCheck(site.name, window, reference, metrics, bool(alarming), detail, None)


def run_drift_check(session: Session, site: Site, now: datetime) -> DriftCheck:
    """Compute and store a drift event (when there was enough data to compare)."""
    check = compute_drift(session, site, now)
    if check.reference is None or not check.metrics:
        return check
    t = thresholds_of(site)
    event = DriftEvent(
        site_id=site.id, model_version_id=site.rollout_model_id, window_start=check.window[0], window_end=check.window[1],
        reference_start=check.reference[0], reference_end=check.reference[1], metrics=check.metrics,
        thresholds={k: getattr(t, k) for k in ("drift_window_hours", "drift_min_frames", "drift_significance",
                                               "drift_min_ks", "drift_min_share_change", "drift_min_mmd")},
        alarm=check.alarm, detail=check.detail, created_at=now,
    )
    session.add(event)
    session.flush()
    metrics.count_on_commit(session, metrics.DRIFT_CHECKS.labels(str(site.id), "true" if check.alarm else "false"))
    metrics.DRIFT_ALARM.labels(str(site.id)).set(1 if check.alarm else 0)
    return DriftCheck(check.site, check.window, check.reference, check.metrics, check.alarm, check.detail, event.id)
