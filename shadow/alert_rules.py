"""What a model flag or a ranger verdict does to alerts, per rollout stage (design.md 1, 5).

Pure functions over plain values, tested table by table; shadow.alerts and
shadow.verdicts apply them to rows.

- manual: model flags send nothing; ranger-confirmed sightings (a confirm, or a MISSED
  report) are the alerts.
- limited: a flag at a camera and hour inside the trial scope, inside the trial window,
  makes a pending alert that goes out only when a ranger confirms it (dismissed: it is
  suppressed). Flags outside the scope or window behave as in manual.
- expanded: flags are queued at once; rangers audit.
- A MISSED report sends a sighting alert in every stage.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any

from bearwatch.schema import AlertStatus, Stage, Verdict

# Knuth's multiplicative hash: frame ids are assigned in capture order, independent of
# what the frame shows, so a hash of the id is an unbiased and stable sample.
HASH_MULTIPLIER = 2654435761
HASH_MODULUS = 2**32


def audit_threshold(rate: float) -> int:
    """Frames whose hash is below this are in the audit sample (same formula in SQL)."""
    return int(round(min(max(rate, 0.0), 1.0) * HASH_MODULUS))


def audit_hash(frame_id: int) -> int:
    return (frame_id * HASH_MULTIPLIER) % HASH_MODULUS


def in_audit_sample(frame_id: int, rate: float) -> bool:
    return audit_hash(frame_id) < audit_threshold(rate)


def in_trial_scope(
    scope: dict[str, Any] | None,
    trial_start: datetime | None,
    trial_end: datetime | None,
    camera_id: int,
    captured_at: datetime,
) -> bool:
    """Whether a frame falls inside the limited trial: its window, cameras and hours (UTC).
    Empty camera or hour lists mean all."""
    if trial_start is None or trial_end is None or not (trial_start <= captured_at < trial_end):
        return False
    scope = scope or {}
    cameras = scope.get("cameras") or []
    hours = scope.get("hours") or []
    if cameras and camera_id not in cameras:
        return False
    return not hours or captured_at.hour in hours


def flag_alert_status(stage: Stage, in_scope: bool) -> AlertStatus | None:
    """The status of the alert a new model flag makes; None: it makes no alert."""
    if stage is Stage.EXPANDED:
        return AlertStatus.QUEUED
    if stage is Stage.LIMITED and in_scope:
        return AlertStatus.PENDING
    return None


# Alerts that absorb later flags of the same animal. A dismissed (suppressed) alert does
# not: a bear arriving after a false alarm must still reach a ranger.
MERGEABLE = (AlertStatus.PENDING, AlertStatus.QUEUED, AlertStatus.SENT)


def within_cooldown(last_flag_at: datetime, captured_at: datetime, cooldown_s: float) -> bool:
    """A flag within ``cooldown_s`` of an alert's last flag at the same camera is the same
    animal (the window slides with each attached flag: one alert per visit)."""
    return abs(captured_at - last_flag_at) <= timedelta(seconds=cooldown_s)


class Effect(str, enum.Enum):
    """What a verdict does to alerts."""

    NONE = "none"  # recorded only (audit, agreement)
    LATE = "late"  # it would have sent an alert, but its frame is stale: recorded only
    RELEASE = "release"  # a held (or dismissed) model alert goes out
    SUPPRESS = "suppress"  # a held model alert is suppressed
    SIGHTING = "sighting"  # a new ranger sighting alert goes out


def verdict_effect(
    verdict: Verdict, flagged: bool, alert_status: AlertStatus | None, sighting_exists: bool
) -> Effect:
    """The effect of one verdict on a frame. ``alert_status``: the model alert the frame's
    flag made or joined (None: it made none: manual, outside the trial, not flagged).
    A confirm beats another ranger's dismiss: a bear seen by anyone goes out."""
    if verdict is Verdict.MISSED:
        return Effect.NONE if sighting_exists else Effect.SIGHTING
    if not flagged:
        return Effect.NONE  # a dismiss on an audit frame: "no bear here"
    if verdict is Verdict.CONFIRM:
        if alert_status in (AlertStatus.PENDING, AlertStatus.SUPPRESSED):
            return Effect.RELEASE
        if alert_status is None:
            return Effect.NONE if sighting_exists else Effect.SIGHTING
        return Effect.NONE  # already queued or sent
    return Effect.SUPPRESS if alert_status is AlertStatus.PENDING else Effect.NONE


def check_verdict_fits(verdict: Verdict, flagged: bool, frame_id: int) -> str | None:
    """A problem with the verdict for this frame, or None."""
    if verdict is Verdict.CONFIRM and not flagged:
        return f"frame {frame_id} was not flagged by the site's model: report a bear with 'missed', or 'dismiss' if there is none"
    if verdict is Verdict.MISSED and flagged:
        return f"frame {frame_id} was flagged by the site's model: 'confirm' it instead of reporting it missed"
    return None


# Flags older than this when first seen (a backlog after an outage) are recorded, not
# alerted, and so are verdicts on frames this old: a bear from hours ago is history,
# not an alert.
FLAG_MAX_AGE_S = 3600.0


# What a verdict did, for people: the CLI's `verdict` line and the Review page.
EFFECT_TEXT: dict[Effect, str] = {
    Effect.RELEASE: "the alert is sent",
    Effect.SUPPRESS: "the alert is suppressed",
    Effect.SIGHTING: "a sighting alert is sent",
    Effect.NONE: "no alert changes",
    Effect.LATE: f"the frame is more than {FLAG_MAX_AGE_S / 3600:g} h old, so no live alert goes out",
}


def is_late(captured_at: datetime, now: datetime, max_age_s: float = FLAG_MAX_AGE_S) -> bool:
    """A frame captured longer ago than the flag staleness window: a verdict on it says
    what was there then, not that a bear is there now."""
    return (now - captured_at).total_seconds() > max_age_s


def late_effect(effect: Effect, late: bool, late_alerts: str) -> Effect:
    """What a verdict that would send an alert does when its frame is stale: nothing live
    (``late_alerts`` "none"), or it goes out marked late ("marked")."""
    if late and late_alerts == "none" and effect in (Effect.RELEASE, Effect.SIGHTING):
        return Effect.LATE
    return effect


def age_text(captured_at: datetime, now: datetime) -> str:
    """How long ago, for a stale frame: ``2 h 5 min``, ``3 d 4 h``."""
    s = max(0, int((now - captured_at).total_seconds()))
    return f"{s // 86400} d {s % 86400 // 3600} h" if s >= 86400 else f"{s // 3600} h {s % 3600 // 60} min"


def confirm_text(
    flagged: bool, alert_status: AlertStatus | None, late: str | None = None, late_alerts: str = "none"
) -> str:
    """What a confirm (or a missed report) will do, for the review queue. ``late``: how
    long ago a stale frame was captured (None: fresh); ``late_alerts``: the site's rule."""
    would_send = alert_status in (None, AlertStatus.PENDING, AlertStatus.SUPPRESSED) or not flagged
    if late is not None and would_send:
        if late_alerts == "none":
            return f"captured {late} ago: your verdict is recorded, no live alert goes out"
        return f"captured {late} ago: " + _confirm_text(flagged, alert_status) + ", marked late"
    return _confirm_text(flagged, alert_status)


def _confirm_text(flagged: bool, alert_status: AlertStatus | None) -> str:
    if not flagged:
        return "not flagged: 'missed' sends a sighting alert; 'dismiss' records no bear"
    if alert_status is AlertStatus.PENDING:
        return "confirming sends the alert; dismissing suppresses it"
    if alert_status is AlertStatus.SUPPRESSED:
        return "another ranger dismissed this alert; confirming sends it"
    if alert_status is None:
        return "confirming sends a sighting alert"
    return "the alert already went out; your verdict is recorded for the audit"
