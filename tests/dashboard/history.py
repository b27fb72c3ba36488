"""Sites with simulated history (bearwatch.demo.simulate, its realistic world: visits
that span frames, misses only partly reported, rangers who err) for the shadow pages,
ending at the real clock (the pages use utcnow()). Small numbers so each builds in
seconds: two cameras, a frame every 15 minutes; the cooldown joins consecutive frames
into one sighting and the audit reviews half of the unflagged frames, so three days can
show a sighting recall of 0.6 (like tests/shadow/scenario.py SMALL).

- oak: manual for 3 days, a good model: its manual -> limited gate passes;
- pine: manual for 3 days, a model that misses most bears: its gate fails;
- elm: manual for 1 day, a good model: its gate is inconclusive and plans;
- aspen: 3 days in manual, then 2 days in limited on a trial scope of one camera;
- willow: 9 days through simulate_rollout: promoted to limited and expanded, then a
  night-time domain shift raises a drift alarm and the guard sends it back to manual.
Users admin / ranger / ops with tests.dashboard.seed.PASSWORD.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.demo.simulate import RolloutEvent, SimSpec, create_site, simulate, simulate_rollout
from bearwatch.park_file import Thresholds
from bearwatch.schema import Camera, Role, Stage
from bearwatch.users import add_user
from shadow.drift import run_drift_check
from shadow.rollout import record_stage_change
from tests.dashboard.seed import PASSWORD

DAY = timedelta(days=1)
QUICK = Thresholds(
    shadow_days=3, trial_days=3, min_reviewed=60, min_confirmed_bears=15, min_recall_lower=0.6, min_precision_lower=0.5,
    min_alerts_reviewed=15, max_missed_bears=8, alert_cooldown_s=900, audit_rate=0.5, audit_near_rate=0.5,
)
# A good model: it catches every visit, day and night; bears come often enough that a
# few days hold dozens of sightings.
GOOD = dict(model_recall=0.99, night_recall_factor=1.0, model_precision=0.9, visit_rate_per_hour=0.3)


def add_users(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        for name, role in (("admin", Role.ADMIN), ("ranger", Role.RANGER), ("ops", Role.OPS)):
            add_user(session, name, role, PASSWORD)


# The gate sites' pages test the gate's other checks: their drift check must not raise a
# chance alarm on these few simulated frames (a 5% test over seven metrics does now and
# then), so it asks for much stronger evidence. Drift alarms are tested in tests/shadow.
QUICK_NO_CHANCE_DRIFT = QUICK.model_copy(update={"drift_significance": 1e-6})


def build_gate_sites(factory: sessionmaker[Session], root: Path, now: datetime) -> None:
    """oak passes its manual gate; pine fails on sighting recall at any time of day the test
    runs (at recall 0.4 and 0.3 visits an hour the evidence was thin enough for the
    anytime-valid bound to say inconclusive when the clock put the nights badly)."""
    start = now - 3 * DAY - timedelta(hours=2)
    for name, spec in (("oak", SimSpec(seed=1, **GOOD)),
                       ("pine", SimSpec(seed=2, model_recall=0.2, model_precision=0.9, visit_rate_per_hour=0.8))):
        with factory.begin() as session:
            site = create_site(session, name, spec, start, root / "models", QUICK_NO_CHANCE_DRIFT)
            simulate(session, site, spec, start, now, root / "frames")
            run_drift_check(session, site, now)


def build_plan_site(factory: sessionmaker[Session], root: Path, now: datetime) -> None:
    """elm: a good model one day into its shadow window, with few bears: too little
    evidence yet, so its gate is inconclusive and says what would decide it."""
    start = now - DAY
    spec = SimSpec(seed=3, model_recall=0.99, night_recall_factor=1.0, model_precision=0.9)
    with factory.begin() as session:
        site = create_site(session, "elm", spec, start, root / "models", QUICK_NO_CHANCE_DRIFT)
        simulate(session, site, spec, start, now, root / "frames")


def build_trial_site(factory: sessionmaker[Session], root: Path, now: datetime) -> None:
    """aspen: 3 days in manual, then promoted (without a gate: the pages read the figures,
    not the decision) to limited on a trial scope of its first camera, 2 days in."""
    start = now - 5 * DAY
    promoted = start + 3 * DAY
    spec = SimSpec(seed=4, **GOOD)
    with factory.begin() as session:
        site = create_site(session, "aspen", spec, start, root / "models", QUICK_NO_CHANCE_DRIFT)
        simulate(session, site, spec, start, promoted, root / "frames")
        first = session.scalars(sa.select(Camera.id).where(Camera.site_id == site.id).order_by(Camera.name)).first()
        site.trial_scope = {"cameras": [first], "hours": []}
        record_stage_change(session, site, Stage.LIMITED, actor="ops", reason="trial on cam-1",
                            now=promoted, trial=(promoted, promoted + 3 * DAY))
        simulate(session, site, spec, promoted, now, root / "frames")


def build_lake(factory: sessionmaker[Session], root: Path, now: datetime) -> list[RolloutEvent]:
    start = now - 9 * DAY
    spec = SimSpec(seed=11, **GOOD, night_shift_from=start + 8 * DAY)
    with factory.begin() as session:
        site = create_site(session, "willow", spec, start, root / "models", QUICK)
        return simulate_rollout(session, site, spec, start, 9, root / "frames")
