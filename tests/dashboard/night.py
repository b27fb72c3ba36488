"""A burst for the night-shift tests: on the seeded park (tests.dashboard.seed), north in a
limited trial and its camera creek flagged 5 times in 8 minutes (a branch in the wind),
real JPEG files, the flags processed into held alerts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Camera, Frame, FrameStatus, Prediction, Stage, utcnow
from ingest.store import FrameStore
from shadow.alerts import process_new_flags
from shadow.rollout import record_stage_change
from shadow.sites import get_site
from tests.dashboard.seed import Seeded, _jpeg

BURST = 5  # creek's flags: the seeded one and 4 more in the 8 minutes before it


def add_creek_burst(factory: sessionmaker[Session], park: Seeded, frames_dir: Path) -> None:
    now = utcnow()
    store = FrameStore(frames_dir)
    with factory.begin() as session:
        north = get_site(session, "north")
        record_stage_change(session, north, Stage.LIMITED, actor="test", reason="trial", now=now - timedelta(hours=1),
                            trial=(now - timedelta(hours=1), now + timedelta(days=7)))
        creek = session.get(Camera, park.camera_ids["creek"])
        assert creek is not None
        for minutes in (2, 4, 6, 8):
            at = now - timedelta(minutes=minutes, seconds=30)
            stored = store.write(creek.site_id, creek.id, at, _jpeg(100 + minutes))
            frame = Frame(camera_id=creek.id, captured_at=at, path=stored.path, sha256=stored.sha256,
                          size_bytes=stored.size_bytes, width=160, height=120, status=FrameStatus.SCORED)
            session.add(frame)
            session.flush()
            session.add(Prediction(frame_id=frame.id, model_version_id=park.model_id, positive_score=0.7, flagged=True,
                                   probabilities={"bear": 0.7, "deer": 0.0, "empty": 0.3}))
    process_new_flags(factory, utcnow())
