"""Database behaviour every part relies on, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import make_engine, write_transaction
from bearwatch.errors import DatabaseNotReady
from bearwatch.migrations import alembic_config, require_head
from bearwatch.schema import Camera, Decision, Frame, ModelVersion, Prediction, Role, Site, User, Verdict, utcnow


def _frame(session: Session) -> Frame:
    site = Site(name="north")
    session.add(site)
    session.flush()
    camera = Camera(site_id=site.id, name="c1", source="file.avi")
    session.add(camera)
    session.flush()
    frame = Frame(camera_id=camera.id, captured_at=utcnow(), path="a.jpg", sha256="0" * 64, size_bytes=1, width=1, height=1)
    session.add(frame)
    session.flush()
    return frame


def test_require_head_refuses_an_empty_and_an_old_database(database_url: str) -> None:
    from alembic import command

    engine = make_engine(database_url)
    with pytest.raises(DatabaseNotReady, match="run `bearwatch init` to create it"):
        require_head(engine)
    cfg = alembic_config(database_url)
    command.upgrade(cfg, "head")
    require_head(engine)  # at head: accepted
    command.downgrade(cfg, "base")
    command.stamp(cfg, "head")
    with engine.begin() as conn:  # pretend the database is one revision behind
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'older'"))
    with pytest.raises(DatabaseNotReady, match="at schema revision older.*run `bearwatch init` to upgrade"):
        require_head(engine)
    engine.dispose()


def test_unreachable_database_is_a_clear_error() -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(DatabaseNotReady, match="cannot reach the database at postgresql"):
        require_head(engine)


def test_one_prediction_per_frame_and_model_version(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        frame = _frame(session)
        model = ModelVersion(name="m", path="/m.pkl", sha256="1" * 64, classes=["bear"], positive_classes=["bear"])
        session.add(model)
        session.flush()
        ids = frame.id, model.id
    row = dict(probabilities={"bear": 0.9}, positive_score=0.9, flagged=True)
    with factory.begin() as session:
        session.add(Prediction(frame_id=ids[0], model_version_id=ids[1], **row))
    with pytest.raises(sa.exc.IntegrityError), factory.begin() as session:
        session.add(Prediction(frame_id=ids[0], model_version_id=ids[1], **row))


def test_one_verdict_per_frame_and_reviewer(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        frame = _frame(session)
        user = User(name="ana", role=Role.RANGER)
        session.add(user)
        session.flush()
        ids = frame.id, user.id
        session.add(Decision(frame_id=ids[0], reviewer_id=ids[1], verdict=Verdict.CONFIRM))
    with pytest.raises(sa.exc.IntegrityError), factory.begin() as session:
        session.add(Decision(frame_id=ids[0], reviewer_id=ids[1], verdict=Verdict.DISMISS))


def test_times_come_back_utc_aware_and_naive_times_are_refused(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        frame = _frame(session)
        frame_id, taken = frame.id, frame.captured_at
    with factory() as session:
        back = session.get(Frame, frame_id)
        assert back is not None
        assert back.captured_at == taken and back.captured_at.utcoffset() == timedelta(0)
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), factory.begin() as session:
        session.add(Site(name="x", stage_since=utcnow().replace(tzinfo=None)))


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    engine.dispose()


def test_write_transaction_rolls_back_on_error(factory: sessionmaker[Session]) -> None:
    with pytest.raises(RuntimeError), write_transaction(factory) as session:
        session.add(Site(name="ghost"))
        session.flush()
        raise RuntimeError("boom")
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Site)) == 0
