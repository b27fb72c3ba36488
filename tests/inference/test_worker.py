"""The batch worker on real JPEGs, a real fastai export and both databases."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import cv2
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.demo.footage import DEMO_CAMERAS, animals_at, events_for, render_frame
from bearwatch.errors import ModelError
from bearwatch.schema import Frame, FrameStatus, ModelRole, ModelVersion, Prediction, Site, utcnow
from inference.queue import claim_batch, commit_results
from inference.registry import load_model, register_model
from inference.scoring import decode_frames, score_images
from inference.worker import WorkerOptions, load_active_models, score_one_batch
from ingest.cameras import add_camera
from ingest.store import FrameStore
from shadow.sites import add_site

SPEC = DEMO_CAMERAS[0]


def _bear_and_empty_times() -> tuple[list[float], list[float]]:
    bears = [(e.start_s + e.end_s) / 2 for e in events_for(SPEC) if e.kind == "bear"]
    empties = [t + 0.5 for t in range(0, int(SPEC.duration_s), 7) if not animals_at(SPEC, t + 0.5)]
    return bears[:3], empties[:3]


def _store_frames(factory: sessionmaker[Session], store: FrameStore, times: list[float]) -> list[int]:
    ids = []
    with factory.begin() as session:
        site = add_site(session, "north", actor="test")
        camera = add_camera(session, site, "c", "x.avi", interval_s=5)
        for i, t in enumerate(times):
            ok, jpeg = cv2.imencode(".jpg", render_frame(SPEC, t))
            when = utcnow() + timedelta(seconds=i)
            stored = store.write(site.id, camera.id, when, jpeg.tobytes())
            frame = Frame(camera_id=camera.id, captured_at=when, path=stored.path, sha256=stored.sha256,
                          size_bytes=stored.size_bytes, width=320, height=240)
            session.add(frame)
            session.flush()
            ids.append(frame.id)
    return ids


def _register(factory: sessionmaker[Session], path: Path, name: str = "demo", role: ModelRole = ModelRole.ROLLOUT) -> int:
    with factory.begin() as session:
        return register_model(session, path, name=name, positive=["bear"], role=role).id


def test_worker_scores_every_frame_once_and_matches_learn_predict(
    factory: sessionmaker[Session], tmp_path: Path, demo_model_path: Path
) -> None:
    store = FrameStore(tmp_path / "frames")
    bears, empties = _bear_and_empty_times()
    ids = _store_frames(factory, store, bears + empties)
    _register(factory, demo_model_path)
    models = load_active_models(factory)
    assert score_one_batch(factory, store.root, models, WorkerOptions(batch_size=64)) == len(ids)
    assert score_one_batch(factory, store.root, models, WorkerOptions(batch_size=64)) == 0  # nothing left
    with factory() as session:
        preds = {p.frame_id: p for p in session.scalars(sa.select(Prediction))}
        frames = {f.id: f for f in session.scalars(sa.select(Frame))}
    assert sorted(preds) == sorted(ids)
    assert all(f.status is FrameStatus.SCORED for f in frames.values())
    learn = models[0].learner
    for frame_id in ids:
        _, _, probs = learn.predict(str(store.absolute(frames[frame_id].path)))
        stored = preds[frame_id].probabilities
        assert stored.keys() == {"bear", "deer", "empty"}
        for i, cls in enumerate(learn.dls.vocab):
            assert stored[cls] == pytest.approx(float(probs[i]), abs=1e-4)
        assert preds[frame_id].flagged == (stored["bear"] >= 0.5)
    # the demo model sees the bears it was made for
    assert sum(preds[i].flagged for i in ids[: len(bears)]) >= len(bears) - 1
    assert sum(preds[i].flagged for i in ids[len(bears):]) <= 1


def test_corrupt_and_truncated_jpegs_fail_with_an_error_while_the_rest_are_scored(
    factory: sessionmaker[Session], tmp_path: Path, demo_model_path: Path
) -> None:
    store = FrameStore(tmp_path / "frames")
    ids = _store_frames(factory, store, [1.0, 2.0, 3.0])
    with factory() as session:
        paths = [session.get(Frame, i).path for i in ids]  # type: ignore[union-attr]
    store.absolute(paths[0]).write_bytes(b"this is not a jpeg")
    data = store.absolute(paths[1]).read_bytes()
    store.absolute(paths[1]).write_bytes(data[: len(data) // 3])
    _register(factory, demo_model_path)
    models = load_active_models(factory)
    options = WorkerOptions(batch_size=8, max_attempts=2)
    for _ in range(3):
        score_one_batch(factory, store.root, models, options)
    with factory() as session:
        frames = {f.id: f for f in session.scalars(sa.select(Frame))}
        scored = set(session.scalars(sa.select(Prediction.frame_id)))
    assert frames[ids[0]].status is FrameStatus.FAILED and "cannot decode" in (frames[ids[0]].last_error or "")
    assert frames[ids[1]].status is FrameStatus.FAILED and frames[ids[1]].attempts == 2
    assert frames[ids[2]].status is FrameStatus.SCORED and scored == {ids[2]}


def test_a_worker_whose_lease_was_taken_cannot_commit(
    factory: sessionmaker[Session], tmp_path: Path, demo_model_path: Path
) -> None:
    store = FrameStore(tmp_path / "frames")
    _store_frames(factory, store, [1.0, 2.0])
    _register(factory, demo_model_path)
    models = load_active_models(factory)
    late = claim_batch(factory, 8, lease_s=0.0)  # its lease expires at once
    images, failed = decode_frames(store.root, late.frames)
    rows = [r for m in models for r in score_images(m, images)]
    assert score_one_batch(factory, store.root, models, WorkerOptions()) == 2  # another worker takes over
    assert commit_results(factory, late, rows, failed, max_attempts=3) == 0
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Prediction)) == 2


def test_a_changed_model_file_is_refused_and_the_other_models_keep_scoring(
    factory: sessionmaker[Session], tmp_path: Path, demo_model_path: Path
) -> None:
    copy = tmp_path / "challenger.pkl"
    shutil.copy(demo_model_path, copy)
    _register(factory, demo_model_path, "demo")
    _register(factory, copy, "challenger", ModelRole.CHALLENGER)
    with copy.open("ab") as fh:
        fh.write(b"tampered")
    with factory() as session:
        changed = session.scalars(sa.select(ModelVersion).where(ModelVersion.name == "challenger")).one()
    with pytest.raises(ModelError, match="changed since it was registered"):
        load_model(changed)
    models = load_active_models(factory)
    assert [m.name for m in models] == ["demo"]


def test_several_models_score_the_same_decoded_frames(
    factory: sessionmaker[Session], tmp_path: Path, demo_model_path: Path
) -> None:
    store = FrameStore(tmp_path / "frames")
    ids = _store_frames(factory, store, [1.0, 2.0])
    _register(factory, demo_model_path, "demo")
    with factory.begin() as session:  # a challenger: the same file, another threshold
        register_model(session, demo_model_path, name="strict", positive=["bear"], threshold=0.99,
                       role=ModelRole.CHALLENGER)
    models = load_active_models(factory)
    assert score_one_batch(factory, store.root, models, WorkerOptions()) == 2
    with factory() as session:
        pairs = session.execute(sa.select(Prediction.frame_id, Prediction.model_version_id)).all()
    assert len(pairs) == 4 and {f for f, _ in pairs} == set(ids)
