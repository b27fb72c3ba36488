"""A small park for the dashboard tests: real rows and real JPEG files.

Site north (rollout model demo-bear): camera `creek` has a fresh flagged frame, `gate`
(an RTSP source with a password, a failing camera) last delivered 10 minutes ago,
`ridge` never delivered. Site south: camera `shore`, fresh and not flagged.
Users: admin / ranger / ops, each with the password PASSWORD.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import CameraHealth, Frame, FrameStatus, ModelVersion, Prediction, Role, utcnow
from bearwatch.users import add_user
from ingest.cameras import add_camera
from ingest.store import FrameStore
from shadow.sites import add_site, set_rollout_model

PASSWORD = "correct horse battery"
SECRET = "s3cr3t-pw"
GATE_SOURCE = f"rtsp://ranger:{SECRET}@10.1.1.7:554/live?token={SECRET}"


@dataclass(frozen=True)
class Seeded:
    model_id: int
    camera_ids: dict[str, int]


def _jpeg(value: int) -> bytes:
    image = np.full((120, 160, 3), value, np.uint8)
    cv2.circle(image, (80, 60), 30, (40, 60, 200), -1)
    return cv2.imencode(".jpg", image)[1].tobytes()


def seed_park(factory: sessionmaker[Session], frames_dir: Path, now: datetime | None = None) -> Seeded:
    now = now or utcnow()
    store = FrameStore(frames_dir)
    with factory.begin() as session:
        for name, role in (("admin", Role.ADMIN), ("ranger", Role.RANGER), ("ops", Role.OPS)):
            add_user(session, name, role, PASSWORD)
        model = ModelVersion(name="demo-bear", path="/models/demo.pkl", sha256="ab" * 32,
                             classes=["bear", "deer", "empty"], positive_classes=["bear"], threshold=0.5)
        session.add(model)
        session.flush()
        north, south = add_site(session, "north", actor="test"), add_site(session, "south", actor="test")
        set_rollout_model(session, north, model, actor="test", now=utcnow())
        cams = {
            "creek": add_camera(session, north, "creek", "/footage/creek.avi", interval_s=5),
            "gate": add_camera(session, north, "gate", GATE_SOURCE, interval_s=5),
            "ridge": add_camera(session, north, "ridge", "/footage/ridge.avi", interval_s=5),
            "shore": add_camera(session, south, "shore", "/footage/shore.avi", interval_s=5),
        }
        shots = {"creek": (now - timedelta(seconds=3), 0.93), "gate": (now - timedelta(minutes=10), 0.2),
                 "shore": (now - timedelta(seconds=2), 0.1)}
        for name, (when, score) in shots.items():
            cam = cams[name]
            for back, value in ((timedelta(minutes=1), 60), (timedelta(0), 140)):
                at = when - back
                stored = store.write(cam.site_id, cam.id, at, _jpeg(value))
                frame = Frame(camera_id=cam.id, captured_at=at, path=stored.path, sha256=stored.sha256,
                              size_bytes=stored.size_bytes, width=160, height=120, status=FrameStatus.SCORED)
                session.add(frame)
                session.flush()
                # Only the newest frame carries the camera's score; the older one is quiet.
                s = score if back == timedelta(0) else 0.05
                session.add(Prediction(frame_id=frame.id, model_version_id=model.id, positive_score=s,
                                       flagged=s >= 0.5, probabilities={"bear": s, "deer": 0.0, "empty": 1 - s}))
            cam.last_frame_at, cam.health = when, CameraHealth.ONLINE
        cams["gate"].health = CameraHealth.DEGRADED
        cams["gate"].consecutive_failures = 4
        cams["gate"].last_error = f"cannot open {GATE_SOURCE}: timeout"
        return Seeded(model_id=model.id, camera_ids={k: c.id for k, c in cams.items()})
