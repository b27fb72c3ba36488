"""A hostile file in the frame store (a decompression bomb, a header claiming a huge
picture, a 2 GB sparse file) fails its own frame with a clear, counted ``too_large``
error before anything is decoded; the worker scores the other frames of the batch."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Frame, FrameStatus, Prediction
from inference.worker import InferenceWorker, WorkerOptions
from ingest.store import FrameStore
from tests.inference.helpers import register, store_frames_at
from tests.ingest.hostile import MAX_IMAGE_BYTES, MAX_SIDE, jpeg_claiming, png_bomb, sparse_file


def _failures(reason: str) -> float:
    return REGISTRY.get_sample_value("bearwatch_inference_failures_total", {"reason": reason}) or 0.0


# Both preprocessing paths read and check the file the same way before any decoder runs.
@pytest.mark.parametrize("preprocess", ["exact", "fast"])
def test_a_hostile_stored_frame_fails_alone_and_the_others_are_scored(
    factory: sessionmaker[Session], tmp_path: Path, model_export_path: Path, preprocess: str
) -> None:
    store = FrameStore(tmp_path / "frames")
    ids = store_frames_at(factory, store, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    with factory() as session:
        paths = {i: session.get(Frame, i).path for i in ids}  # type: ignore[union-attr]
    bomb, huge, just_over, sparse, good = ids[0], ids[1], ids[2], ids[3], ids[4:]
    store.absolute(paths[bomb]).write_bytes(png_bomb(30000, 20000))  # a PNG, whatever the name says
    store.absolute(paths[huge]).write_bytes(jpeg_claiming(30000, 30000))
    # 9000x9000 is under PIL's own default bomb limit: without our cap PIL decodes it (243 MB).
    store.absolute(paths[just_over]).write_bytes(jpeg_claiming(9000, 9000))
    store.absolute(paths[sparse]).unlink()
    sparse_file(store.absolute(paths[sparse]))
    register(factory, model_export_path)
    before = {reason: _failures(reason) for reason in ("too_large", "decode")}
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker = InferenceWorker(factory, store.root, WorkerOptions(device="cpu", max_attempts=1, decode_threads=2,
                                                                    preprocess=preprocess))
    worker.refresh_models()
    assert worker.run_once() == len(ids)  # one batch: the hostile frames did not stop it
    worker.close()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - peak_before < 500
    with factory() as session:
        frames = {f.id: f for f in session.scalars(sa.select(Frame))}
        scored = set(session.scalars(sa.select(Prediction.frame_id)))
    assert scored == set(good)
    assert all(frames[i].status is FrameStatus.SCORED for i in good)
    errors = {i: frames[i].last_error or "" for i in (bomb, huge, just_over, sparse)}
    assert all(frames[i].status is FrameStatus.FAILED for i in errors), errors
    cap = f"larger than {MAX_SIDE}x{MAX_SIDE} px"
    assert f"{paths[bomb]}: image 30000x20000 px is {cap}" in errors[bomb]
    assert f"{paths[huge]}: image 30000x30000 px is {cap}" in errors[huge]
    assert f"{paths[just_over]}: image 9000x9000 px is {cap}" in errors[just_over]
    assert f"file of {2 * 1024**3} bytes is larger than the {MAX_IMAGE_BYTES} bytes allowed" in errors[sparse]
    assert _failures("too_large") - before["too_large"] == 4
    assert _failures("decode") == before["decode"]
