"""Drift: the current window against a reference window (design.md section 1).

Reference: the window ops chose for the site (sites.drift_reference_start/_end, kept as
given), else the last ``drift_reference_max_hours`` (7 days) of the site's latest manual
period (while in manual, without the current window). The samples are bounded (2,000
frames, 300 embeddings, below), so a longer reference adds nothing to them but reading
time, and a recent one is the fairer baseline (the season moves on): a month in manual
would otherwise be read, and its counts summed, on every pass. Current: the last
``drift_window_hours``. Compared, on the site's rollout model:
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

Reading: a check reads a bounded sample, whatever the length of the windows (a manual
period can hold millions of frames). The shares (night, flags, out-of-domain) and the
frame counts are SQL aggregates over the whole window; the KS metrics get at most
``SAMPLE_FRAMES`` frames per window and the MMD at most ``SAMPLE_EMBEDDINGS`` embeddings,
each drawn in SQL in the order of a seeded hash of the frame id (the same check on the
same data reads the same sample) and stratified by day/night in proportion to the
window's frames (brightness, sharpness, scores and embeddings all differ between day and
night, so the sample keeps the window's exact night share). :func:`compute_drifts` reads
every site's windows in a fixed number of statements whatever the number of sites: a
closed reference (ops' window, a promoted site's manual period) is read once and kept;
the current window and a manual site's reference, which slides with the pass, are read
by clock hour, their closed hours kept, so the hourly pass reads the open hour and the
part hours at the windows' ends, whatever the length of the manual period; kept in
memory and in the database (drift_kept_windows, written with the drift events), so a new
process reads them back instead of the frames (drift_windows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.errors import ConfigError
from bearwatch.park_file import Thresholds
from bearwatch.schema import DriftEvent, Site, Stage
from shadow import metrics
from shadow.drift_sampling import WindowSpec, sample_seed
from shadow.drift_windows import SAMPLE_EMBEDDINGS, WindowData, read_windows, store_kept_windows
from shadow.periods import Period, latest_manual_period, latest_manual_periods, thresholds_of
from shadow.stats import ks_compare, mmd_test, share_compare

MMD_PERMUTATIONS = 200
# A reference window that ended this long ago is closed: its frames were scored and no
# longer change, so its counts and sample are read once and kept (shadow.drift_windows).
REFERENCE_SETTLED = timedelta(minutes=5)
THRESHOLD_KEYS = ("drift_window_hours", "drift_min_frames", "drift_significance",
                  "drift_min_ks", "drift_min_share_change", "drift_min_mmd", "drift_reference_max_hours")


def _ks_metric(ref: np.ndarray, cur: np.ndarray, t: Thresholds) -> dict[str, Any] | None:
    if len(ref) < 2 or len(cur) < 2:
        return None
    r = ks_compare(ref, cur)
    return {"test": "ks", "statistic": r.statistic, "p_value": r.p_value, "reference": r.reference, "current": r.current,
            "min_effect": t.drift_min_ks, "alarm": r.p_value < t.drift_significance and r.statistic >= t.drift_min_ks,
            "n_reference": len(ref), "n_current": len(cur)}


def _share_metric(ref: tuple[int, int], cur: tuple[int, int], t: Thresholds) -> dict[str, Any] | None:
    """``ref``, ``cur``: (hits, frames)."""
    if ref[1] == 0 or cur[1] == 0:
        return None
    r = share_compare(ref[0], ref[1], cur[0], cur[1])
    return {"test": "fisher", "statistic": r.statistic, "p_value": r.p_value, "reference": r.reference,
            "current": r.current, "min_effect": t.drift_min_share_change,
            "alarm": r.p_value < t.drift_significance and abs(r.statistic) >= t.drift_min_share_change,
            "n_reference": ref[1], "n_current": cur[1]}


def drift_metrics(ref: WindowData, cur: WindowData, t: Thresholds, *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Every metric that has data in both windows: its numbers and whether it alarms."""
    rc, cc = ref.totals, cur.totals
    metrics: dict[str, dict[str, Any] | None] = {
        "brightness": _ks_metric(ref.brightness, cur.brightness, t),
        "sharpness": _ks_metric(ref.sharpness, cur.sharpness, t),
        "night_share": _share_metric((rc.night, rc.night_known), (cc.night, cc.night_known), t),
        "positive_score": _ks_metric(ref.scores, cur.scores, t),
        "flag_rate": _share_metric((rc.flagged, rc.scored), (cc.flagged, cc.scored), t),
        "ood_share": _share_metric((rc.ood_over, rc.ood_known), (cc.ood_over, cc.ood_known), t),
    }
    if len(ref.embeddings) >= 2 and len(cur.embeddings) >= 2 and ref.embeddings.shape[1] == cur.embeddings.shape[1]:
        m = mmd_test(ref.embeddings, cur.embeddings, permutations=MMD_PERMUTATIONS, max_n=SAMPLE_EMBEDDINGS, seed=seed)
        metrics["embedding_mmd"] = {
            "test": "mmd", "statistic": m.mmd2, "p_value": m.p_value, "bandwidth": m.bandwidth,
            "min_effect": t.drift_min_mmd, "alarm": m.p_value < t.drift_significance and m.mmd2 >= t.drift_min_mmd,
            "n_reference": m.n_x, "n_current": m.n_y, "permutations": m.permutations,
        }
    return {k: v for k, v in metrics.items() if v is not None}


def set_reference_window(site: Site, window: tuple[datetime, datetime] | None) -> None:
    """The window drift is measured against from now on; None: back to the default, the
    latest manual period (reference_window)."""
    if window is not None and window[1] <= window[0]:
        raise ConfigError("a drift reference window ends after it starts")
    site.drift_reference_start, site.drift_reference_end = window if window is not None else (None, None)


def _custom_reference(site: Site) -> bool:
    return site.drift_reference_start is not None and site.drift_reference_end is not None


def _sliding_reference(site: Site) -> bool:
    """Whether the site's reference ends where its current window starts, so moves with
    every pass (a manual site's default): read by clock hour, not read once and kept."""
    return site.stage is Stage.MANUAL and not _custom_reference(site)


def _sliding_reference_sites() -> sa.Select[int]:
    """SQL: the ids of the sites with a sliding reference (_sliding_reference)."""
    return sa.select(Site.id).where(Site.stage == Stage.MANUAL, sa.or_(Site.drift_reference_start.is_(None),
                                                                       Site.drift_reference_end.is_(None)))


def _reference_of(site: Site, period: Period | None, now: datetime, t: Thresholds) -> tuple[datetime, datetime] | None:
    """Ops' window as given, else the end of the latest manual period: at most its last
    drift_reference_max_hours before the current window (module doc)."""
    if site.drift_reference_start is not None and site.drift_reference_end is not None:
        return site.drift_reference_start, site.drift_reference_end
    if period is None:
        return None
    end = period.end
    if site.stage is Stage.MANUAL:
        end = min(end, now - timedelta(hours=t.drift_window_hours))
    start = max(period.start, end - timedelta(hours=t.drift_reference_max_hours))
    return (start, end) if end > start else None


def reference_window(session: Session, site: Site, now: datetime, t: Thresholds) -> tuple[datetime, datetime] | None:
    if site.drift_reference_start is not None and site.drift_reference_end is not None:
        return site.drift_reference_start, site.drift_reference_end
    return _reference_of(site, latest_manual_period(session, site, now), now, t)


@dataclass(frozen=True)
class DriftCheck:
    site: str
    window: tuple[datetime, datetime]
    reference: tuple[datetime, datetime] | None
    metrics: dict[str, dict[str, Any]]
    alarm: bool
    detail: str
    event_id: int | None  # the stored drift_events row; None when there was too little data
    site_id: int | None = None
    model_version_id: int | None = None  # the site's rollout model, whose predictions were compared
    thresholds: dict[str, Any] = field(default_factory=dict)  # the drift thresholds it was judged by


def _judge(site: Site, window: tuple[datetime, datetime], reference: tuple[datetime, datetime],
           ref: WindowData, cur: WindowData, t: Thresholds, now: datetime) -> DriftCheck:
    found: dict[str, dict[str, Any]] = {}
    if ref.frames < t.drift_min_frames or cur.frames < t.drift_min_frames:
        detail = (f"too few usable frames to compare (reference {ref.frames}, current {cur.frames}, "
                  f"needs {t.drift_min_frames} each)")
    else:
        found = drift_metrics(ref, cur, t, seed=int(now.timestamp()) % (2**31))
        alarming = sorted(k for k, v in found.items() if v["alarm"])
        detail = f"drift in {', '.join(alarming)}" if alarming else "no drift"
    return DriftCheck(site.name, window, reference, found, any(v["alarm"] for v in found.values()), detail, None,
                      site.id, site.rollout_model_id, {k: getattr(t, k) for k in THRESHOLD_KEYS})


def compute_drifts(session: Session, sites: Sequence[Site], now: datetime) -> list[DriftCheck]:
    """Read-only: the drift numbers of ``sites`` at ``now`` (nothing stored), in order.
    A fixed number of statements whatever the number of sites: the ledger, then every
    window's counts and samples (read_windows: the streaming cameras for the caches, the
    current windows by hour, the other windows whole)."""
    custom = [s for s in sites if _custom_reference(s)]
    periods = latest_manual_periods(session, [s.id for s in sites if s not in custom], now)
    plans = []
    for site in sites:
        t = thresholds_of(site)
        window = (now - timedelta(hours=t.drift_window_hours), now)
        plans.append((site, t, window, _reference_of(site, periods.get(site.id), now, t)))
    specs = [spec for site, _, window, reference in plans if reference is not None
             for spec in (WindowSpec(site.id, site.rollout_model_id, *reference, sample_seed(site),
                                     closed=reference[1] <= now - REFERENCE_SETTLED and not _sliding_reference(site),
                                     hourly=_sliding_reference(site)),
                          WindowSpec(site.id, site.rollout_model_id, *window, sample_seed(site), hourly=True))]
    data = iter(read_windows(session, specs, now=now))
    checks = []
    for site, t, window, reference in plans:
        if reference is None:
            checks.append(DriftCheck(site.name, window, None, {}, False,
                                     "no reference window yet (no manual period before the current window)", None,
                                     site_id=site.id, model_version_id=site.rollout_model_id))
        else:
            checks.append(_judge(site, window, reference, next(data), next(data), t, now))
    return checks


def compute_drift(session: Session, site: Site, now: datetime) -> DriftCheck:
    """Read-only: the drift numbers for ``site`` at ``now`` (nothing stored)."""
    return compute_drifts(session, [site], now)[0]


def _event_row(check: DriftCheck, now: datetime) -> dict[str, Any]:
    assert check.reference is not None
    return {"site_id": check.site_id, "model_version_id": check.model_version_id, "window_start": check.window[0],
            "window_end": check.window[1], "reference_start": check.reference[0], "reference_end": check.reference[1],
            "metrics": check.metrics, "thresholds": check.thresholds, "alarm": check.alarm, "detail": check.detail,
            "created_at": now}


def _count_stored(session: Session, check: DriftCheck) -> None:
    metrics.count_on_commit(session, metrics.DRIFT_CHECKS.labels(str(check.site_id), "true" if check.alarm else "false"))
    metrics.DRIFT_ALARM.labels(str(check.site_id)).set(1 if check.alarm else 0)


def _store_kept(session: Session, checks: Sequence[DriftCheck], now: datetime) -> None:
    """The windows the checks read and kept, for the next process (drift_kept_windows);
    closed hours are kept for twice the longest current window, and those of a site with a
    sliding reference (every manual site's, whether checked in this pass or not) for as
    long as its reference reaches back: its hours are read again each pass."""
    thresholds = [Thresholds().model_dump(), *(c.thresholds for c in checks if c.thresholds)]
    hours = max(t["drift_window_hours"] for t in thresholds)
    reach = max(t["drift_window_hours"] + t["drift_reference_max_hours"] for t in thresholds)
    store_kept_windows(session, now, keep_hours=2 * hours, longer=(_sliding_reference_sites(), reach))


def store_drift_checks(session: Session, checks: Sequence[DriftCheck], now: datetime) -> int:
    """Store a drift event for each check that compared data, all in one insert, and the
    windows the checks kept; returns how many of them alarmed."""
    stored = [c for c in checks if c.metrics]
    if stored:
        session.execute(sa.insert(DriftEvent), [_event_row(c, now) for c in stored])
    for check in stored:
        _count_stored(session, check)
    _store_kept(session, checks, now)
    return sum(c.alarm for c in stored)


def run_drift_check(session: Session, site: Site, now: datetime) -> DriftCheck:
    """Compute and store a drift event (when there was enough data to compare)."""
    check = compute_drift(session, site, now)
    if not check.metrics:
        return check
    event = DriftEvent(**_event_row(check, now))
    session.add(event)
    session.flush()
    _count_stored(session, check)
    _store_kept(session, [check], now)
    return replace(check, event_id=event.id)
