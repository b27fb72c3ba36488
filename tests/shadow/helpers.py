"""Rows for the shadow tests: a site with cameras and a rollout model, users, frames with
predictions inserted directly (the inference worker is tested elsewhere), and tiny real
JPEG files where a file is needed; and the review queue's plan, for tests that bound what
it reads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor
from bearwatch.schema import (
    AlertChannel,
    Camera,
    ChannelKind,
    Frame,
    FrameStatus,
    ModelRole,
    ModelVersion,
    Prediction,
    Role,
    Site,
    Stage,
    User,
)
from shadow import review_queue
from tests.statements import Sent, plan_nodes

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Park:
    site_id: int
    site: str
    cameras: tuple[int, ...]
    model_id: int
    challenger_id: int


def make_park(
    factory: sessionmaker[Session], *, name: str = "north", stage: Stage = Stage.MANUAL, cameras: int = 2,
    thresholds: dict[str, object] | None = None, trial: tuple[datetime, datetime] | None = None,
    scope: dict[str, object] | None = None,
) -> Park:
    with factory.begin() as session:
        model = ModelVersion(name=f"bears-{name}", path="/models/bears.pkl", sha256=name.ljust(64, "0")[:64],
                             classes=["bear", "not_bear"], positive_classes=["bear"], threshold=0.5)
        challenger = ModelVersion(name=f"bears-{name}-next", path="/models/next.pkl", sha256=name.ljust(64, "1")[:64],
                                  classes=["bear", "not_bear"], positive_classes=["bear"], role=ModelRole.CHALLENGER)
        session.add_all([model, challenger])
        session.flush()
        site = Site(name=name, stage=stage, rollout_model_id=model.id, thresholds=thresholds or {},
                    trial_scope=scope or {}, trial_start=trial[0] if trial else None, trial_end=trial[1] if trial else None)
        session.add(site)
        session.flush()
        cams = [Camera(site_id=site.id, name=f"cam{i}", source=f"/footage/{i}.avi") for i in range(cameras)]
        session.add_all(cams)
        session.flush()
        return Park(site.id, name, tuple(c.id for c in cams), model.id, challenger.id)


def add_user(factory: sessionmaker[Session], name: str, role: Role = Role.RANGER) -> Actor:
    with factory.begin() as session:
        if session.scalar(sa.select(User).where(User.name == name)) is None:
            session.add(User(name=name, role=role))
    return Actor(name, role)


def add_frame(
    factory: sessionmaker[Session], camera_id: int, captured_at: datetime, *, model_id: int | None = None,
    score: float | None = None, challenger_id: int | None = None, challenger_score: float | None = None,
    path: str | None = None,
) -> int:
    """A scored frame; ``score`` None: no prediction of the rollout model (yet)."""
    with factory.begin() as session:
        frame = Frame(camera_id=camera_id, captured_at=captured_at, path=path or f"{camera_id}/{captured_at:%H%M%S%f}.jpg",
                      sha256="0" * 64, size_bytes=1000, width=64, height=48, status=FrameStatus.SCORED)
        session.add(frame)
        session.flush()
        for mid, s in ((model_id, score), (challenger_id, challenger_score)):
            if mid is not None and s is not None:
                session.add(Prediction(frame_id=frame.id, model_version_id=mid, probabilities={"bear": s, "not_bear": 1 - s},
                                       positive_score=s, flagged=s >= 0.5, ood_score=0.1))
        return frame.id


def add_prediction(factory: sessionmaker[Session], frame_id: int, model_id: int, score: float) -> None:
    with factory.begin() as session:
        session.add(Prediction(frame_id=frame_id, model_version_id=model_id, probabilities={"bear": score, "not_bear": 1 - score},
                               positive_score=score, flagged=score >= 0.5))


def add_scored_frames(
    factory: sessionmaker[Session], model_id: int, frames: Iterable[tuple[int, int, datetime, float]],
) -> list[dict[str, Any]]:
    """Scored day frames in bulk, each (id, camera id, captured_at, the rollout model's
    score; flagged at 0.5, scored 2 s after capture); on PostgreSQL the id sequence moved
    past them and the tables analysed, as a live park's would be. Returns the predictions'
    rows."""
    frame_rows: list[dict[str, Any]] = []
    predictions: list[dict[str, Any]] = []
    for frame_id, camera_id, captured_at, score in frames:
        frame_rows.append({"id": frame_id, "camera_id": camera_id, "captured_at": captured_at, "path": f"{frame_id}.jpg",
                           "sha256": f"{frame_id:064d}", "size_bytes": 1000, "width": 64, "height": 48,
                           "brightness": 120.0, "contrast": 30.0, "is_night": False, "status": FrameStatus.SCORED})
        predictions.append({"frame_id": frame_id, "model_version_id": model_id,
                            "probabilities": {"bear": score, "not_bear": 1 - score}, "positive_score": score,
                            "flagged": score >= 0.5, "ood_score": 0.1, "scored_at": captured_at + timedelta(seconds=2)})
    with factory.begin() as session:
        session.execute(sa.insert(Frame), frame_rows)
        session.execute(sa.insert(Prediction), predictions)
        if session.get_bind().dialect.name == "postgresql":
            session.execute(sa.text("SELECT setval(pg_get_serial_sequence('frames', 'id'), (SELECT max(id) FROM frames))"))
            session.execute(sa.text("ANALYZE frames; ANALYZE predictions"))
    return predictions


def queue_plan(engine: sa.Engine, seen: Iterable[Sent]) -> list[dict[str, Any]]:
    """PostgreSQL: the plan of the review queue's statement (the longest read among
    ``seen``), run again under EXPLAIN ANALYZE after the queue's SET LOCALs."""
    queue = max((st for st in seen if st.reads), key=lambda st: len(st.sql))
    return plan_nodes(engine, queue, setup=review_queue._INDEX_PLANS)


def add_channel(factory: sessionmaker[Session], name: str, kind: ChannelKind = ChannelKind.LOG, url: str | None = None,
                sites: list[str] | None = None) -> int:
    with factory.begin() as session:
        channel = AlertChannel(name=name, kind=kind, url=url, sites=sites or [])
        session.add(channel)
        session.flush()
        return channel.id


def write_jpeg(path: Path, seed: int) -> None:
    """A tiny real JPEG file."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path, "JPEG")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
