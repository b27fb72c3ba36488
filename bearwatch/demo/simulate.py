"""A simulated site history, backdated: cameras, frames (tiny real JPEGs with their
image statistics), predictions of a model with known sighting recall and alert
precision (scores, embeddings, out-of-domain scores), ranger verdicts with the review
design stored on each, alerts as the stage rules make them, and the site's stage as the
caller moves it.

What happens in the world (bear visits that span frames, what the model flags and
scores, ranger errors, partial miss reports) is bearwatch.demo.world, realistic by
default: the calibration bench runs the same world. On top, per camera and frame slot
(one frame every ``frame_interval_s``):
- night is 20:00-06:00 UTC (grey, darker frames); from ``night_shift_from`` night frames
  are darker still, their embeddings move and their out-of-domain score rises;
- from ``dark_from`` the last camera goes dark: black frames (``dark_mode="black"``),
  one frozen night frame repeated byte for byte (``"frozen"``), or no frames and
  health offline (``"offline"``);
- from ``alert_multiplier_from`` the model alerts ``alert_multiplier`` times as often;
- the rangers review as the system asks them to, by the site's stage: manual - every
  flagged frame, the audit sample the site's audit design picks (shadow.audit_design),
  and the misses they report on their own; limited - every alert (held until a ranger
  decides), the audit and the reports; expanded - ``alert_audit_rate`` of the alerts,
  the audit and the reports; around a bear the audit found, rangers check the
  frames within the cooldown until its sighting is complete (``follow_ups``); a lone verdict
  against the model gets a second ranger and a disagreement a third, as the second-look
  queue asks (``second_looks``). Each verdict stores why the frame was shown and its
  inclusion probability, as the verdict path does.
Frame files are written without fsync (it is a simulation; the frame store proper
writes atomically). Sizes are the caller's: tests keep them small.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.demo.footage import (
    DEMO_CAMERAS,
    FootageSpec,
    animals_at,
    events_for,
    random_placement,
    render_frame,
    render_scene,
)
from bearwatch.demo.world import NIGHT_HOURS, CameraFrames, WorldSpec, camera_frames, ranger_says_bear
from bearwatch.park_file import Thresholds
from bearwatch.schema import (
    Alert,
    AlertStatus,
    Camera,
    CameraHealth,
    Decision,
    Frame,
    FrameStatus,
    ModelVersion,
    Prediction,
    ReviewReason,
    Role,
    Site,
    Stage,
    User,
    Verdict,
)
from ingest.quality import frame_stats
from ingest.store import FrameStore
from shadow import audit_design
from shadow.alert_rules import within_cooldown
from shadow.drift import run_drift_check
from shadow.gates import GateOutcome, evaluate_gate
from shadow.guard import run_guard
from shadow.periods import thresholds_of
from shadow.rollout import record_creation, record_stage_change
from shadow.truth import needs_another_look

EMBEDDING_DIM = 16


@dataclass(frozen=True)
class SimSpec:
    seed: int = 0
    cameras: int = 2
    frame_interval_s: float = 900.0
    visit_rate_per_hour: float = 0.12  # bear visits per camera-hour (more at night)
    visit_frames_mean: float = 2.5  # frames a visit spans
    model_recall: float = 0.9  # sighting recall by day: visits the model flags at least once
    night_recall_factor: float = 0.9  # night recall = model_recall * this
    model_precision: float = 0.7  # alert precision
    threshold: float = 0.5
    ranger_miss: float = 0.05  # a ranger calls a bear frame empty
    ranger_false: float = 0.002  # a ranger calls an empty frame a bear
    second_review_rate: float = 0.1
    second_looks: bool = True  # the second-look queue (shadow.truth.needs_another_look): up to three rangers
    miss_report_rate: float = 0.1  # missed visits a ranger reports on their own
    miss_near_share: float = 0.5  # missed visits scored just below the threshold
    alert_audit_rate: float = 0.3  # expanded: alerts a ranger looks at afterwards
    alert_multiplier: float = 1.0
    alert_multiplier_from: datetime | None = None
    night_shift_from: datetime | None = None
    dark_from: datetime | None = None
    dark_mode: str = "black"  # "black" frames, "frozen" (the same frame again and again), or "offline": no frames
    image_size: tuple[int, int] = (32, 24)
    # Render the footage generator's scenes (day/night, a bear where the world put one, a deer
    # on some false alarms) instead of noise textures: ~3 ms a frame at 320x240, for the demo.
    scenes: bool = False

    def world(self) -> WorldSpec:
        return WorldSpec(
            seed=self.seed, visit_rate_per_hour=self.visit_rate_per_hour, visit_frames_mean=self.visit_frames_mean,
            sighting_recall=self.model_recall, night_recall_factor=self.night_recall_factor, alert_precision=self.model_precision, threshold=self.threshold,
            ranger_miss=self.ranger_miss, ranger_false=self.ranger_false, second_review_rate=self.second_review_rate,
            miss_report_rate=self.miss_report_rate, miss_near_share=self.miss_near_share,
            alert_multiplier=self.alert_multiplier,
        )


@dataclass(frozen=True)
class SimSummary:
    frames: int
    bears: int
    flagged: int
    alerts: int
    decisions: int


def is_night_hour(at: datetime) -> bool:
    return at.hour >= NIGHT_HOURS[0] or at.hour < NIGHT_HOURS[1]


def _ranger(session: Session, name: str) -> User:
    user = session.scalar(sa.select(User).where(User.name == name))
    if user is None:
        user = User(name=name, role=Role.RANGER)
        session.add(user)
        session.flush()
    return user


def create_site(
    session: Session, name: str, spec: SimSpec, start: datetime, model_dir: Path, thresholds: Thresholds | None = None,
    *, model: ModelVersion | None = None,
) -> Site:
    """A site in manual since ``start`` with ``spec.cameras`` cameras and a rollout
    model: ``model`` if given (the demo's real one), else a small file with a known
    sha256 standing in for a fastai export."""
    if model is None:
        model_dir.mkdir(parents=True, exist_ok=True)
        model_path = model_dir / f"{name}-model.bin"
        model_path.write_bytes(hashlib.sha256(f"{name}-{spec.seed}".encode()).digest() * 64)
        model = ModelVersion(
            name=f"{name}-model", path=str(model_path), sha256=hashlib.sha256(model_path.read_bytes()).hexdigest(),
            classes=["bear", "empty"], positive_classes=["bear"], threshold=spec.threshold, created_at=start,
        )
        session.add(model)
        session.flush()
    t = (thresholds or Thresholds()).model_dump()
    site = Site(name=name, stage=Stage.MANUAL, stage_since=start, rollout_model_id=model.id, thresholds=t, created_at=start)
    session.add(site)
    session.flush()
    for i in range(spec.cameras):
        session.add(Camera(site_id=site.id, name=f"cam-{i + 1}", source=f"sim://{name}/{i + 1}", interval_s=spec.frame_interval_s,
                           health=CameraHealth.ONLINE, created_at=start))
    record_creation(session, site, actor="simulator")
    session.flush()
    return site


def _image(rng: np.random.Generator, size: tuple[int, int], brightness: float, night: bool, dark: bool) -> np.ndarray:
    w, h = size
    if dark:
        return np.full((h, w, 3), 1, np.uint8)
    grey = np.clip(rng.normal(brightness, 12.0, (h, w)), 0, 255)
    if night:
        return np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)  # IR: no colour
    tint = np.array([-25.0, 15.0, 10.0])  # greenish daylight (BGR)
    return np.clip(grey[..., None] + tint, 0, 255).astype(np.uint8)


def _scene_phase_s(slot: datetime, cycle_s: float) -> float:
    """The footage clip time whose light matches ``slot``'s hour: the clip's day (sun above
    the horizon) spans the world's day hours, its night the night hours (NIGHT_HOURS)."""
    hour = slot.hour + slot.minute / 60 + slot.second / 3600
    night_from, night_to = NIGHT_HOURS
    day_hours = (night_from - night_to) % 24
    edge = 0.05  # radians kept off the horizon, so dawn and dusk hours fall on their own side
    if night_to <= hour < night_from:
        angle = -np.pi / 2 + edge + (np.pi - 2 * edge) * (hour - night_to) / day_hours
    else:
        angle = np.pi / 2 + edge + (np.pi - 2 * edge) * ((hour - night_from) % 24) / (24 - day_hours)
    return float(angle % (2 * np.pi) / (2 * np.pi) * cycle_s)


def _scene(spec: SimSpec, cam_index: int, slot: datetime, bear: bool, false_alarm: bool) -> np.ndarray:
    """A camera frame of the demo's world: this camera's scene at ``slot``'s light, with a
    bear if there is one, and a deer on a third of the model's false alarms."""
    w, h = spec.image_size
    scene = FootageSpec(f"sim-{spec.seed}-{cam_index}", seed=(spec.seed * 97 + cam_index) % 100_000, width=w, height=h)
    # Its own draws (the world's stay as they are), seeded by the slot's time: simulate() runs
    # day by day, and a slot index would repeat yesterday's frame byte for byte, which drift
    # and the guard rightly count once, as a frozen camera's.
    rng = np.random.default_rng([spec.seed, 7, cam_index, int(slot.timestamp())])
    animals = []
    if bear:
        animals.append(random_placement(scene, "bear", rng))
    elif false_alarm and rng.random() < 1 / 3:
        animals.append(random_placement(scene, "deer", rng))
    # The clip's noise is seeded by its time: a jitter (well inside the dawn/dusk margin)
    # keeps the same hour of two days from being the same image.
    t = _scene_phase_s(slot, scene.day_cycle_s) + float(rng.uniform(0.0, 0.2))
    return render_scene(scene, t, animals)


def _review(flagged: bool, alert: Alert | None, audited: bool, follow_up: bool, reported: bool) -> ReviewReason | None:
    """Why a ranger looks at this frame, as the review queue would put it (None: nobody does)."""
    if alert is not None and alert.status is AlertStatus.PENDING:
        return ReviewReason.HELD_ALERT
    if flagged:
        return ReviewReason.FLAGGED
    if audited:
        return ReviewReason.AUDIT
    if follow_up:
        return ReviewReason.FOLLOW_UP
    return ReviewReason.MISSED_REPORT if reported else None


def follow_ups(audited_bears: list[int], bear: np.ndarray, interval_s: float, cooldown_s: float) -> set[int]:
    """Frame indices a ranger checks around each bear the audit found: every frame within
    the cooldown, and on from each bear among them, until the sighting is complete."""
    reach = max(1, int(cooldown_s // interval_s)) if interval_s <= cooldown_s else 0
    seen: set[int] = set()
    todo = list(audited_bears)
    while todo:
        i = todo.pop()
        for j in range(max(0, i - reach), min(len(bear), i + reach + 1)):
            if j not in seen and j != i:
                seen.add(j)
                if bear[j]:
                    todo.append(j)
    return seen


def _make_frames(
    spec: SimSpec, rng: np.random.Generator, store: FrameStore, site: Site, camera: Camera, cam_index: int,
    last_camera: bool, start: datetime, step: timedelta, world: CameraFrames,
) -> list[tuple[Frame, int, bool, bool, bool]]:
    """One camera's frames of [start, start + slots * step), written to the store, rows not
    yet added: (frame, world index, night, shifted, dark) each; ``last_camera``: the one
    that goes dark from ``spec.dark_from``."""
    slots = len(world.bear)
    made: list[tuple[Frame, int, bool, bool, bool]] = []
    for i in range(slots):
        slot = start + i * step
        dark = spec.dark_from is not None and slot >= spec.dark_from and last_camera
        if dark and spec.dark_mode == "offline":
            continue
        night = is_night_hour(slot)
        shifted = night and spec.night_shift_from is not None and slot >= spec.night_shift_from
        brightness = (18.0 if shifted else 50.0) if night else 125.0
        if dark and spec.dark_mode == "frozen":
            img = _image(np.random.default_rng([spec.seed, camera.id]), spec.image_size, 50.0, True, False)
        else:
            img = _image(rng, spec.image_size, brightness + rng.normal(0, 5), night, dark)
            if spec.scenes and not dark:
                img = _scene(spec, cam_index, slot, bool(world.bear[i]), bool(world.flagged[i]))
                if shifted:  # the night-shift drift scenario: much darker nights
                    img = (img.astype(np.float32) * (18.0 / 50.0)).astype(np.uint8)
        ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert ok
        data = jpeg.tobytes()
        rel = store.relative_path(site.id, camera.id, slot)
        path = store.absolute(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        st = frame_stats(img)
        frame = Frame(camera_id=camera.id, captured_at=slot, path=rel, sha256=hashlib.sha256(data).hexdigest(),
                      size_bytes=len(data), width=st.width, height=st.height, brightness=st.brightness,
                      contrast=st.contrast, sharpness=st.sharpness, is_night=st.is_night, change_score=None,
                      status=FrameStatus.SCORED)
        made.append((frame, i, night, shifted, dark))
    return made


def _flag_alert(
    session: Session, site: Site, frame: Frame, model_id: int, last_flag: dict[int, datetime], cooldown_s: float,
) -> Alert | None:
    """The alert a flag in scope makes, as the stage rules would (None: it joins the
    camera's open alert: a flag within the cooldown of the camera's previous flag, the
    window sliding as shadow.alert_rules.within_cooldown)."""
    slot = frame.captured_at
    prev = last_flag.get(frame.camera_id)
    last_flag[frame.camera_id] = slot
    if prev is not None and within_cooldown(prev, slot, cooldown_s):
        return None
    expanded = site.stage is Stage.EXPANDED
    alert = Alert(site_id=site.id, camera_id=frame.camera_id, frame_id=frame.id, model_version_id=model_id,
                  stage=site.stage, status=AlertStatus.SENT if expanded else AlertStatus.PENDING,
                  idempotency_key=f"sim-{frame.id}-{model_id}", created_at=slot,
                  delivered_at=slot if expanded else None)
    session.add(alert)
    return alert


def _ranger_verdicts(
    session: Session, rng: np.random.Generator, spec: SimSpec, world: WorldSpec, rangers: list[User], frame: Frame,
    reason: ReviewReason, stratum: audit_design.Stratum, t: Thresholds, *, flagged: bool, bear: bool,
    alert: Alert | None, stage: Stage,
) -> int:
    """The verdicts on a frame shown for ``reason``: the first ranger's, a second one's at
    ``second_review_rate`` or when the second-look queue asks, a third one's on a
    disagreement. In limited, the first verdict sends or suppresses the held alert.
    Returns how many verdicts it stored."""
    slot = frame.captured_at
    double = rng.random() < spec.second_review_rate
    verdicts: list[tuple[int, Verdict]] = []
    for n, ranger in enumerate(rangers):
        more = (n == 1 and double) or (spec.second_looks and needs_another_look(flagged, verdicts))
        if n > 0 and not more:
            break
        # A ranger reporting a miss on their own saw the bear; the others judge what they are shown.
        sees_bear = True if reason is ReviewReason.MISSED_REPORT and n == 0 else bool(
            ranger_says_bear(world, rng, np.array([bear]))[0])
        if flagged:
            verdict = Verdict.CONFIRM if sees_bear else Verdict.DISMISS
        else:
            verdict = Verdict.MISSED if sees_bear else Verdict.DISMISS
        verdicts.append((ranger.id, verdict))
        session.add(Decision(frame_id=frame.id, reviewer_id=ranger.id, verdict=verdict,
                             decided_at=slot + timedelta(seconds=30 + 30 * n), review_reason=reason,
                             audit_stratum=stratum.value, inclusion_prob=audit_design.stratum_rate(stratum, t)))
        if alert is not None and n == 0 and stage is Stage.LIMITED:
            alert.status = AlertStatus.SENT if verdict is Verdict.CONFIRM else AlertStatus.SUPPRESSED
            alert.delivered_at = slot + timedelta(seconds=60) if verdict is Verdict.CONFIRM else None
    return len(verdicts)


def simulate(session: Session, site: Site, spec: SimSpec, start: datetime, end: datetime, frames_root: Path) -> SimSummary:
    """Simulate [start, end) at ``site`` in its current stage; returns what was made."""
    # Seeded on the offset from the site's creation, not on the clock: the same spec gives
    # the same draws whenever it runs (tests build their history up to utcnow()).
    created = site.created_at.replace(tzinfo=None) if site.created_at else start.replace(tzinfo=None)
    rng = np.random.default_rng([spec.seed, max(0, int((start.replace(tzinfo=None) - created).total_seconds()))])
    store = FrameStore(frames_root)
    model = session.get(ModelVersion, site.rollout_model_id)
    assert model is not None, "simulated sites have a rollout model"
    t = thresholds_of(site)
    world = spec.world()
    cameras = list(session.scalars(sa.select(Camera).where(Camera.site_id == site.id).order_by(Camera.id)))
    rangers = [_ranger(session, f"sim-ranger-{n}") for n in (1, 2, 3)]
    scope = set((site.trial_scope or {}).get("cameras") or [])
    scope_hours = set((site.trial_scope or {}).get("hours") or [])
    last_flag: dict[int, datetime] = {}
    counts = dict(frames=0, bears=0, flagged=0, alerts=0, decisions=0)
    step = timedelta(seconds=spec.frame_interval_s)
    slots = int(np.ceil((end - start) / step)) if end > start else 0
    start_hour = start.hour + start.minute / 60 + start.second / 3600
    multiplier_from = None
    if spec.alert_multiplier_from is not None:
        multiplier_from = max(0, int(np.ceil((spec.alert_multiplier_from - start) / step)))
    for cam_index, camera in enumerate(cameras):
        w = camera_frames(world, rng, slots, spec.frame_interval_s, start_hour, multiplier_from)
        made = _make_frames(spec, rng, store, site, camera, cam_index, cam_index == len(cameras) - 1, start, step, w)
        session.add_all([m[0] for m in made])
        session.flush()  # one multi-row insert: the frames get their ids
        audited_at = {i: not w.flagged[i] and audit_design.in_audit(frame.id, float(w.score[i]), frame.is_night,
                                                                      model.threshold, t) for frame, i, *_ in made}
        checked = follow_ups([i for i, a in audited_at.items() if a and w.bear[i]], w.bear & ~w.flagged,
                             spec.frame_interval_s, t.alert_cooldown_s)
        for frame, i, night, shifted, dark in made:
            slot = frame.captured_at
            bear = bool(w.bear[i]) and not dark
            flagged = bool(w.flagged[i]) and not dark
            score = float(w.score[i]) if not dark else float(rng.uniform(0.0, 0.05))
            emb = rng.normal(0.0, 1.0, EMBEDDING_DIM)
            emb[0] += 1.5 if bear else 0.0
            emb[1] += 1.0 if night else 0.0
            if shifted:
                emb[2:6] += 2.5
            ood = (0.5 if spec.dark_mode == "frozen" else 5.6) if dark else float(abs(rng.normal(2.2, 0.4) if shifted else rng.normal(0.6, 0.2)))
            session.add(Prediction(frame_id=frame.id, model_version_id=model.id,
                                   probabilities={"bear": score, "empty": 1 - score}, positive_score=score,
                                   flagged=flagged, ood_score=ood, embedding=emb.astype(np.float16).tobytes(), scored_at=slot))
            counts["frames"] += 1
            counts["bears"] += bear
            counts["flagged"] += flagged
            # Alerts by stage.
            alert: Alert | None = None
            in_scope = (not scope or camera.id in scope) and (not scope_hours or slot.hour in scope_hours)
            if flagged and site.stage is not Stage.MANUAL and in_scope:
                alert = _flag_alert(session, site, frame, model.id, last_flag, t.alert_cooldown_s)
                counts["alerts"] += alert is not None
            # Rangers: what the review design shows them, and the misses they report.
            audited = audited_at[i] and not dark
            shows_flag = flagged and (site.stage is not Stage.EXPANDED or (alert is not None and rng.random() < spec.alert_audit_rate))
            reason = _review(shows_flag, alert, audited, i in checked and not flagged,
                             bool(w.reported[i]) and bear and not flagged)
            if reason is None:
                continue
            stratum = audit_design.stratum_of(score, frame.is_night, flagged, model.threshold, t)
            counts["decisions"] += _ranger_verdicts(session, rng, spec, world, rangers, frame, reason, stratum, t,
                                                    flagged=flagged, bear=bear, alert=alert, stage=site.stage)
        last = session.scalar(sa.select(sa.func.max(Frame.captured_at)).where(Frame.camera_id == camera.id))
        camera.last_frame_at = last
        is_dark = spec.dark_from is not None and cam_index == len(cameras) - 1 and end > spec.dark_from
        camera.health = CameraHealth.OFFLINE if (is_dark and spec.dark_mode == "offline") else CameraHealth.ONLINE
    session.flush()
    return SimSummary(**counts)


def add_footage_frames(
    session: Session, site: Site, frames_root: Path, start: datetime, *, count: int, interval_s: float = 600.0,
    bear_share: float = 0.5, seed: int = 0,
) -> int:
    """Real-looking frames for backtests: ``count`` frames rendered from the demo
    footage (bearwatch.demo.footage, known truth), on the site's first camera, one every
    ``interval_s`` from ``start``, each reviewed by a ranger who is right (CONFIRM a
    bear, DISMISS anything else). Returns how many bear frames it made."""
    rng = np.random.default_rng(seed)
    store = FrameStore(frames_root)
    camera = session.scalars(sa.select(Camera).where(Camera.site_id == site.id).order_by(Camera.id)).first()
    assert camera is not None, "the site needs a camera"
    ranger = _ranger(session, "sim-ranger-1")
    bears = 0
    for i in range(count):
        spec = DEMO_CAMERAS[i % len(DEMO_CAMERAS)]
        want_bear = rng.random() < bear_share
        events = [e for e in events_for(spec) if e.kind == "bear"]
        if want_bear:
            event = events[int(rng.integers(len(events)))]
            t = float(rng.uniform(event.start_s + 1.0, event.end_s - 1.0))
        else:
            t = float(rng.uniform(0.0, spec.duration_s))
            while animals_at(spec, t):
                t = float(rng.uniform(0.0, spec.duration_s))
        bear = "bear" in animals_at(spec, t)
        bears += bear
        img = render_frame(spec, t)
        ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        data = jpeg.tobytes()
        at = start + timedelta(seconds=i * interval_s)
        rel = store.relative_path(site.id, camera.id, at)
        store.absolute(rel).parent.mkdir(parents=True, exist_ok=True)
        store.absolute(rel).write_bytes(data)
        st = frame_stats(img)
        frame = Frame(camera_id=camera.id, captured_at=at, path=rel, sha256=hashlib.sha256(data).hexdigest(),
                      size_bytes=len(data), width=st.width, height=st.height, brightness=st.brightness, contrast=st.contrast,
                      sharpness=st.sharpness, is_night=st.is_night, status=FrameStatus.SCORED)
        session.add(frame)
        session.flush()
        session.add(Decision(frame_id=frame.id, reviewer_id=ranger.id,
                             verdict=Verdict.CONFIRM if bear else Verdict.DISMISS, decided_at=at + timedelta(seconds=30)))
    camera.last_frame_at = start + timedelta(seconds=(count - 1) * interval_s)
    session.flush()
    return bears


@dataclass(frozen=True)
class RolloutEvent:
    at: datetime
    what: str  # "promoted", "demoted", "drift alarm"
    detail: str


def simulate_rollout(
    session: Session, site: Site, spec: SimSpec, start: datetime, days: int, frames_root: Path, *,
    actor: str = "ops (simulated)",
) -> list[RolloutEvent]:
    """Run ``site`` day by day from ``start`` as ops and the guard would: after each
    simulated day a drift check is stored, the guard runs (limited, expanded), and the
    site is promoted when its gate passes (the limited trial lasts ``trial_days``).
    Returns what happened, for a demo of a site further along."""
    events: list[RolloutEvent] = []
    for day in range(days):
        now = start + timedelta(days=day + 1)
        simulate(session, site, spec, start + timedelta(days=day), now, frames_root)
        drift = run_drift_check(session, site, now)
        if drift.alarm:
            events.append(RolloutEvent(now, "drift alarm", drift.detail))
        if site.stage is not Stage.MANUAL:
            guarded = run_guard(session, site, now)
            if guarded.demoted:
                events.append(RolloutEvent(now, "demoted", "; ".join(guarded.reasons)))
                continue
        if site.stage is Stage.EXPANDED:
            continue
        gate = evaluate_gate(session, site, now)
        if gate.outcome is GateOutcome.PASS:
            to = gate.to_stage
            trial = (now, now + timedelta(days=thresholds_of(site).trial_days)) if to is Stage.LIMITED else None
            record_stage_change(session, site, to, actor=actor, reason=f"gate {gate.from_stage.value} -> {to.value} passed",
                                now=now, evidence={"gate": gate.as_evidence(), "override": False}, trial=trial)
            events.append(RolloutEvent(now, "promoted", f"{gate.from_stage.value} -> {to.value}"))
    return events
