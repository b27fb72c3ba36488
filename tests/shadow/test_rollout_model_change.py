"""Changing a site's rollout model goes through the rollout state machine: a restart in
manual, at the ``now`` the caller passes, recorded in the ledger as one."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.errors import InvalidTransition
from bearwatch.schema import ModelVersion, Site, Stage, StageChange, utcnow
from shadow.rollout import check_transition, record_stage_change
from shadow.sites import add_site, get_site, set_rollout_model


def _model(session: Session, name: str) -> ModelVersion:
    model = ModelVersion(name=name, path=f"/{name}.pkl", sha256=name[0] * 64, classes=["bear", "empty"],
                         positive_classes=["bear"], threshold=0.5)
    session.add(model)
    session.flush()
    return model


def _ledger(session: Session, site: Site) -> list[StageChange]:
    return list(session.scalars(sa.select(StageChange).where(StageChange.site_id == site.id)
                                .order_by(StageChange.changed_at, StageChange.id)))


def _replay(rows: list[StageChange]) -> None:
    """Every ledger row is a transition the state machine allows, from where the last left."""
    assert rows[0].from_stage is None and rows[0].to_stage is Stage.MANUAL
    for before, row in zip(rows, rows[1:], strict=False):
        assert row.from_stage is before.to_stage
        assert row.from_stage is not None
        check_transition(row.from_stage, row.to_stage, restart="restart" in row.evidence)


@pytest.mark.parametrize("stage", [Stage.MANUAL, Stage.LIMITED, Stage.EXPANDED])
def test_a_new_rollout_model_restarts_the_site_in_manual(factory: sessionmaker[Session], stage: Stage) -> None:
    t0 = utcnow() + timedelta(minutes=1)
    later = t0 + timedelta(days=3)
    with factory.begin() as session:
        site = add_site(session, "north", actor="ops")
        first, second = _model(session, "first"), _model(session, "second")
        set_rollout_model(session, site, first, actor="ops", now=t0)
        if stage is not Stage.MANUAL:
            record_stage_change(session, site, Stage.LIMITED, actor="ops", reason="gate passed", now=t0 + timedelta(days=1),
                                trial=(t0 + timedelta(days=1), t0 + timedelta(days=8)))
            site.trial_scope = {"cameras": [], "hours": [20, 21]}
        if stage is Stage.EXPANDED:
            record_stage_change(session, site, Stage.EXPANDED, actor="ops", reason="gate passed", now=t0 + timedelta(days=2))
        set_rollout_model(session, site, second, actor="ada", now=later)
        ids = first.id, second.id
    with factory() as session:
        site = get_site(session, "north")
        assert (site.stage, site.stage_since, site.rollout_model_id) == (Stage.MANUAL, later, ids[1])
        assert (site.trial_start, site.trial_end, site.trial_scope) == (None, None, {})
        rows = _ledger(session, site)
        _replay(rows)
        last = rows[-1]
        assert (last.from_stage, last.to_stage, last.actor, last.changed_at) == (stage, Stage.MANUAL, "ada", later)
        assert last.model_version_id == ids[1] and "rollout model set to second" in last.reason
        assert last.evidence == {"restart": {"previous_model_version_id": ids[0], "model_version_id": ids[1]}}


def test_setting_the_same_rollout_model_again_changes_nothing(factory: sessionmaker[Session]) -> None:
    now = utcnow() + timedelta(minutes=1)
    with factory.begin() as session:
        site = add_site(session, "north", actor="ops")
        model = _model(session, "first")
        set_rollout_model(session, site, model, actor="ops", now=now)
        set_rollout_model(session, site, model, actor="ops", now=now + timedelta(hours=1))
        rows = _ledger(session, site)
        assert [(r.from_stage, r.to_stage) for r in rows] == [(None, Stage.MANUAL), (Stage.MANUAL, Stage.MANUAL)]
        assert rows[1].changed_at == site.stage_since == now


def test_only_a_restart_goes_from_manual_to_manual() -> None:
    with pytest.raises(InvalidTransition, match="cannot go from manual to manual"):
        check_transition(Stage.MANUAL, Stage.MANUAL)
    with pytest.raises(InvalidTransition, match="cannot go from manual to expanded"):
        check_transition(Stage.MANUAL, Stage.EXPANDED, restart=True)
    for stage in Stage:
        check_transition(stage, Stage.MANUAL, restart=True)

