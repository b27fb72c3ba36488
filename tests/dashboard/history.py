"""Sites with weeks of simulated history (bearwatch.demo.simulate) for the shadow pages,
ending at the real clock (the pages use utcnow()). Small numbers so each builds in
seconds: two cameras, a frame every 15 minutes.

- oak: manual for 3 days, a good model: its manual -> limited gate passes;
- pine: manual for 3 days, a model that misses half the bears: its gate fails;
- willow: 9 days through simulate_rollout: promoted to limited and expanded, then a
  night-time domain shift raises a drift alarm and the guard sends it back to manual.
Users admin / ranger / ops with tests.dashboard.seed.PASSWORD.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from bearwatch.config import Thresholds
from bearwatch.demo.simulate import RolloutEvent, SimSpec, create_site, simulate, simulate_rollout
from bearwatch.schema import Role
from bearwatch.users import add_user
from shadow.drift import run_drift_check
from tests.dashboard.seed import PASSWORD

DAY = timedelta(days=1)
QUICK = Thresholds(
    shadow_days=3, trial_days=3, min_reviewed=60, min_confirmed_bears=15, min_recall_lower=0.8, min_precision_lower=0.5,
    min_alerts_reviewed=15, max_missed_bears=8,
)


def add_users(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        for name, role in (("admin", Role.ADMIN), ("ranger", Role.RANGER), ("ops", Role.OPS)):
            add_user(session, name, role, PASSWORD)


# The gate sites' pages test the gate's other checks: their drift check must not raise a
# chance alarm on these few simulated frames (a 5% test over seven metrics does now and
# then), so it asks for much stronger evidence. Drift alarms are tested in tests/shadow.
QUICK_NO_CHANCE_DRIFT = QUICK.model_copy(update={"drift_significance": 1e-6})


def build_gate_sites(factory: sessionmaker[Session], root: Path, now: datetime) -> None:
    start = now - 3 * DAY - timedelta(hours=2)
    for name, spec in (("oak", SimSpec(seed=1, model_recall=0.98, model_precision=0.9)),
                       ("pine", SimSpec(seed=2, model_recall=0.5, model_precision=0.9))):
        with factory.begin() as session:
            site = create_site(session, name, spec, start, root / "models", QUICK_NO_CHANCE_DRIFT)
            simulate(session, site, spec, start, now, root / "frames")
            run_drift_check(session, site, now)


def build_lake(factory: sessionmaker[Session], root: Path, now: datetime) -> list[RolloutEvent]:
    start = now - 9 * DAY
    spec = SimSpec(seed=11, model_recall=0.98, model_precision=0.9, night_shift_from=start + 8 * DAY)
    with factory.begin() as session:
        site = create_site(session, "willow", spec, start, root / "models", QUICK)
        return simulate_rollout(session, site, spec, start, 9, root / "frames")
