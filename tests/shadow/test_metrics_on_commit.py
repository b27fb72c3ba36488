"""Counters of database writes move only when the write commits (shadow.metrics.count_on_commit):
an alert status change in a transaction that rolls back is not counted."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import write_transaction
from bearwatch.schema import Alert, AlertStatus, Stage
from shadow.alerts import set_status
from tests.shadow.helpers import T0, add_frame, make_park


def _queued(site_id: int) -> float:
    return REGISTRY.get_sample_value("bearwatch_alerts_total", {"site": str(site_id), "stage": "manual", "status": "queued"}) or 0.0


def test_a_status_change_counts_only_when_its_transaction_commits(factory: sessionmaker[Session]) -> None:
    park = make_park(factory)
    frame_id = add_frame(factory, park.cameras[0], T0, model_id=park.model_id, score=0.9)
    with write_transaction(factory) as session:
        session.add(Alert(site_id=park.site_id, camera_id=park.cameras[0], frame_id=frame_id, stage=Stage.MANUAL,
                          status=AlertStatus.PENDING, idempotency_key=f"t-{frame_id}", last_flag_at=T0, created_at=T0))
    before = _queued(park.site_id)

    class Lost(Exception):
        pass

    with pytest.raises(Lost):
        with write_transaction(factory) as session:
            set_status(session, session.scalars(sa.select(Alert)).one(), AlertStatus.QUEUED)
            raise Lost  # e.g. a lost race: the transaction rolls back
    assert _queued(park.site_id) == before
    with factory() as session:
        assert session.scalars(sa.select(Alert)).one().status is AlertStatus.PENDING

    with write_transaction(factory) as session:
        set_status(session, session.scalars(sa.select(Alert)).one(), AlertStatus.QUEUED)
        assert _queued(park.site_id) == before, "not before the commit"
    assert _queued(park.site_id) == before + 1
