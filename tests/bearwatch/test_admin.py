"""Admin acts behind the dashboard check the role themselves: cameras (ingest.cameras),
a model's role (inference.model_versions) and threshold (shadow.sites)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor
from bearwatch.errors import ConfigError, NotFound, PermissionDenied
from bearwatch.schema import Camera, ModelRole, ModelVersion, Role, Stage, StageChange, utcnow
from inference.model_versions import set_model_role
from ingest.cameras import add_camera, set_camera_enabled
from shadow.sites import add_site, set_model_threshold, set_rollout_model

ADMIN, OPS, RANGER = Actor("ada", Role.ADMIN), Actor("otto", Role.OPS), Actor("rick", Role.RANGER)


def _park(factory: sessionmaker[Session]) -> tuple[int, int]:
    with factory.begin() as session:
        site = add_site(session, "north", actor="test")
        camera = add_camera(session, site, "creek", "x.avi", interval_s=5)
        model = ModelVersion(name="m", path="/m.pkl", sha256="0" * 64, classes=["bear", "empty"],
                             positive_classes=["bear"], threshold=0.5)
        session.add(model)
        session.flush()
        set_rollout_model(session, site, model, actor="test", now=utcnow())
        site.stage = Stage.EXPANDED
        return camera.id, model.id


def test_only_admins_switch_cameras(factory: sessionmaker[Session]) -> None:
    camera_id, _ = _park(factory)
    for actor in (RANGER, OPS):
        with factory.begin() as session, pytest.raises(PermissionDenied, match="may not enable or disable cameras"):
            set_camera_enabled(session, actor, camera_id, False)
    with factory.begin() as session:
        set_camera_enabled(session, ADMIN, camera_id, False)
    with factory() as session:
        assert session.get(Camera, camera_id).enabled is False  # type: ignore[union-attr]
    with factory.begin() as session, pytest.raises(NotFound):
        set_camera_enabled(session, ADMIN, 9999, True)


def test_threshold_change_sends_the_site_back_to_manual_with_a_ledger_row(factory: sessionmaker[Session]) -> None:
    _, model_id = _park(factory)
    now = utcnow() + timedelta(hours=1)
    with factory.begin() as session, pytest.raises(PermissionDenied):
        set_model_threshold(session, OPS, model_id, 0.8, now=now)
    with factory.begin() as session, pytest.raises(ConfigError, match="between 0 and 1"):
        set_model_threshold(session, ADMIN, model_id, 1.5, now=now)
    with factory.begin() as session:
        set_model_threshold(session, ADMIN, model_id, 0.8, now=now)
    with factory() as session:
        change = session.scalars(sa.select(StageChange).order_by(StageChange.id.desc())).first()
        assert change is not None and (change.from_stage, change.to_stage, change.actor) == (Stage.EXPANDED, Stage.MANUAL, "ada")
        assert "threshold of m changed from 0.5 to 0.8" in change.reason and change.changed_at == now
        assert session.get(ModelVersion, model_id).threshold == 0.8  # type: ignore[union-attr]


def test_a_rollout_model_cannot_be_retired(factory: sessionmaker[Session]) -> None:
    _, model_id = _park(factory)
    with factory.begin() as session, pytest.raises(PermissionDenied):
        set_model_role(session, RANGER, model_id, ModelRole.CHALLENGER)
    with factory.begin() as session, pytest.raises(ConfigError, match="rollout model of north"):
        set_model_role(session, ADMIN, model_id, ModelRole.RETIRED)
    with factory.begin() as session:
        set_model_role(session, ADMIN, model_id, ModelRole.CHALLENGER)
    with factory() as session:
        assert session.get(ModelVersion, model_id).role is ModelRole.CHALLENGER  # type: ignore[union-attr]
