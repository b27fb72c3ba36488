"""Promotion and demotion on SQLite and PostgreSQL. The gate evaluator is passed in, so
each test sets the gate's outcome (the real gates are tested in test_gate_checks and
test_scenario_gates)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor
from bearwatch.db import write_transaction
from bearwatch.errors import ConfigError, GateNotPassed, InvalidTransition, NotFound, PermissionDenied
from bearwatch.schema import Role, Site, Stage, StageChange
from shadow.gates import Check, GateOutcome, GateResult, combine
from shadow.promotion import TrialScope, demote, ledger, parse_hours, promote, refusal_lines
from tests.shadow.helpers import T0, make_park

RANGER, OPS, ADMIN = Actor("ana", Role.RANGER), Actor("olga", Role.OPS), Actor("adam", Role.ADMIN)


def gate(outcome: GateOutcome) -> "object":
    def evaluate(session: Session, site: Site, now: datetime) -> GateResult:
        checks = (
            Check("reviewed_frames", GateOutcome.PASS, 320, 300, ">=", {"reviewed": 320}),
            Check("recall_lower_bound", outcome, 0.85 if outcome is GateOutcome.FAIL else None, 0.9, ">=",
                  detail="Wilson 95% lower bound"),
        )
        return GateResult(site.name, site.stage, Stage.LIMITED, combine(list(checks)), checks, now)
    return evaluate


def _site(factory: sessionmaker[Session]) -> Site:
    with factory() as session:
        return session.scalars(sa.select(Site)).one()


def test_a_ranger_cannot_promote_ops_can_on_pass(factory: sessionmaker[Session]) -> None:
    make_park(factory, thresholds={"trial_days": 3})
    with pytest.raises(PermissionDenied, match="ana \\(ranger\\) may not promote a site"):
        with write_transaction(factory) as session:
            promote(session, "north", RANGER, "looks good", T0, evaluate=gate(GateOutcome.PASS))
    with write_transaction(factory) as session:
        change = promote(session, "north", OPS, "gate passed", T0, evaluate=gate(GateOutcome.PASS),
                         scope=TrialScope(cameras=("cam1",), hours=(20, 21)))
        assert (change.from_stage, change.to_stage, change.actor) == (Stage.MANUAL, Stage.LIMITED, "olga")
        assert change.evidence["gate"]["outcome"] == "pass" and change.evidence["override"] is False
    site = _site(factory)
    assert site.stage is Stage.LIMITED
    assert (site.trial_start, site.trial_end) == (T0, T0 + timedelta(days=3))
    assert site.trial_scope["hours"] == [20, 21] and len(site.trial_scope["cameras"]) == 1


@pytest.mark.parametrize("outcome", [GateOutcome.FAIL, GateOutcome.INCONCLUSIVE])
def test_promotion_refused_unless_the_gate_passes(factory: sessionmaker[Session], outcome: GateOutcome) -> None:
    make_park(factory)
    with pytest.raises(GateNotPassed, match=f"stays manual.*gate is {outcome.value}") as refused:
        with write_transaction(factory) as session:
            promote(session, "north", OPS, "please", T0, evaluate=gate(outcome))
    assert len(refused.value.lines) == 1 and refused.value.lines[0].startswith(f"{outcome.value}: recall_lower_bound")
    assert _site(factory).stage is Stage.MANUAL


def test_override_needs_admin_and_a_reason_and_is_recorded(factory: sessionmaker[Session]) -> None:
    make_park(factory)
    with pytest.raises(PermissionDenied, match="override"):
        with write_transaction(factory) as session:
            promote(session, "north", OPS, "trust me", T0, override=True, evaluate=gate(GateOutcome.FAIL))
    with pytest.raises(InvalidTransition, match="written reason"):
        with write_transaction(factory) as session:
            promote(session, "north", ADMIN, "  ", T0, override=True, evaluate=gate(GateOutcome.FAIL))
    with write_transaction(factory) as session:
        change = promote(session, "north", ADMIN, "bear season, rangers short", T0, override=True, evaluate=gate(GateOutcome.FAIL))
        assert change.evidence["override"] is True and change.evidence["gate"]["outcome"] == "fail"


def test_demote_always_works_and_writes_a_ledger_row(factory: sessionmaker[Session]) -> None:
    make_park(factory, stage=Stage.EXPANDED)
    with pytest.raises(PermissionDenied):
        with write_transaction(factory) as session:
            demote(session, "north", Stage.MANUAL, RANGER, "scared", T0)
    with write_transaction(factory) as session:
        demote(session, "north", Stage.LIMITED, OPS, "alert rate doubled", T0)
    with pytest.raises(InvalidTransition, match="cannot demote north from limited to expanded.*a promotion, through the gate"):
        with write_transaction(factory) as session:
            demote(session, "north", Stage.EXPANDED, OPS, "oops", T0)
    with write_transaction(factory) as session:
        demote(session, "north", Stage.MANUAL, OPS, "drift alarm", T0 + timedelta(hours=1))
    with factory() as session:
        rows = ledger(session, "north")
    assert [(r.from_stage, r.to_stage, r.reason) for r in rows] == [
        (Stage.LIMITED, Stage.MANUAL, "drift alarm"), (Stage.EXPANDED, Stage.LIMITED, "alert rate doubled")]
    assert _site(factory).stage is Stage.MANUAL


def test_expanded_is_the_last_stage_and_scope_is_for_limited_only(factory: sessionmaker[Session]) -> None:
    make_park(factory, stage=Stage.LIMITED, trial=(T0, T0 + timedelta(days=7)))
    with pytest.raises(InvalidTransition, match="limited trial only"):
        with write_transaction(factory) as session:
            promote(session, "north", OPS, "go", T0, scope=TrialScope(hours=(1,)), evaluate=gate(GateOutcome.PASS))
    with write_transaction(factory) as session:
        promote(session, "north", OPS, "trial went well", T0, evaluate=gate(GateOutcome.PASS))
    site = _site(factory)
    assert site.stage is Stage.EXPANDED and site.trial_start is None and site.trial_scope == {}
    with pytest.raises(InvalidTransition, match="last stage"):
        with write_transaction(factory) as session:
            promote(session, "north", OPS, "more", T0, evaluate=gate(GateOutcome.PASS))
    with pytest.raises(NotFound, match="no camera"):
        with write_transaction(factory) as session:
            demote(session, "north", Stage.MANUAL, OPS, "restart", T0)
            promote(session, "north", OPS, "x", T0, scope=TrialScope(cameras=("cam9",)), evaluate=gate(GateOutcome.PASS))
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(StageChange)) == 1


@pytest.mark.parametrize(
    ("text", "hours"),
    [("20-6", (20, 21, 22, 23, 0, 1, 2, 3, 4, 5, 6)), ("8,9,12-14", (8, 9, 12, 13, 14)), ("5", (5,)), ("0-23", tuple(range(24)))],
)
def test_parse_hours(text: str, hours: tuple[int, ...]) -> None:
    assert parse_hours(text) == hours


@pytest.mark.parametrize("text", ["24", "a-b", "3-25"])
def test_parse_hours_refuses_nonsense(text: str) -> None:
    with pytest.raises(ConfigError, match="hours"):
        parse_hours(text)


def test_refusal_lines_skip_passing_checks() -> None:
    result = gate(GateOutcome.FAIL)(None, Site(name="x", stage=Stage.MANUAL), T0)  # type: ignore[operator]
    assert refusal_lines(result) == ["fail: recall_lower_bound = 0.85, needs >= 0.9 (Wilson 95% lower bound)"]


@pytest.mark.timeout(120)
def test_concurrent_stage_changes_keep_the_ledger_a_chain(factory: sessionmaker[Session]) -> None:
    """Each change reads the stage under the site lock: every ledger row starts where the
    previous one ended, however the changes interleave."""
    import threading

    make_park(factory, stage=Stage.EXPANDED)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def change(i: int) -> None:
        barrier.wait()
        for step in range(3):
            try:
                with write_transaction(factory) as session:
                    if (i + step) % 2:
                        demote(session, "north", Stage.MANUAL if i % 2 else Stage.LIMITED, OPS, f"t{i}", T0)
                    else:
                        promote(session, "north", OPS, f"t{i}", T0, evaluate=gate(GateOutcome.PASS))
            except InvalidTransition:
                pass  # e.g. promoting an expanded site, demoting a manual one
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=change, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with factory() as session:
        rows = list(reversed(ledger(session, "north")))
    assert len(rows) >= 2
    stage = Stage.EXPANDED
    for row in rows:
        assert row.from_stage is stage
        stage = row.to_stage
    assert _site(factory).stage is stage


def test_promotion_refused_when_the_stage_changed_since_the_user_looked(factory: sessionmaker[Session]) -> None:
    # Two ops look at the same manual site; the first promotes it. The second one's click
    # was meant for the manual -> limited gate and must not promote limited -> expanded.
    make_park(factory)
    with write_transaction(factory) as session:
        promote(session, "north", OPS, "gate passed", T0, evaluate=gate(GateOutcome.PASS), expected_stage=Stage.MANUAL)
    with pytest.raises(InvalidTransition, match="north is limited now, not manual as when you looked"):
        with write_transaction(factory) as session:
            promote(session, "north", ADMIN, "gate passed", T0, evaluate=gate(GateOutcome.PASS), expected_stage=Stage.MANUAL)
    site = _site(factory)
    assert site.stage is Stage.LIMITED
    with factory() as session:
        assert [c.to_stage for c in session.scalars(sa.select(StageChange).order_by(StageChange.id))][-1] is Stage.LIMITED
