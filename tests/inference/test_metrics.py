"""The worker's Prometheus metrics move with the work it does."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Frame
from inference.worker import InferenceWorker, WorkerOptions
from ingest.store import FrameStore
from tests.inference.helpers import register, store_frames_at


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_scored_frames_batches_failures_and_queue_are_exported(
    factory: sessionmaker[Session], tmp_path: Path, model_export_path: Path
) -> None:
    store = FrameStore(tmp_path / "frames")
    ids = store_frames_at(factory, store, [1.0, 2.0, 3.0])
    (store.root / "broken.jpg").write_bytes(b"not a jpeg")
    with factory.begin() as session:  # the first frame's file is garbage
        frame = session.get(Frame, ids[0])
        assert frame is not None
        frame.path = "broken.jpg"
    register(factory, model_export_path, "metered")
    before = {
        "scored": _value("bearwatch_frames_scored_total", model="metered"),
        "batches": _value("bearwatch_inference_batch_size_count"),
        "decode": _value("bearwatch_inference_failures_total", reason="decode"),
    }
    worker = InferenceWorker(factory, store.root, WorkerOptions(device="cpu"))
    worker.publish_queue_stats(force=True)  # the run loop does this every few seconds
    assert _value("bearwatch_inference_queue_depth") == 3
    assert _value("bearwatch_inference_oldest_unscored_age_seconds") >= 0
    worker.refresh_models()
    worker.run_once()
    worker.close()
    assert _value("bearwatch_frames_scored_total", model="metered") - before["scored"] == 2
    assert _value("bearwatch_inference_batch_size_count") - before["batches"] == 1
    assert _value("bearwatch_inference_failures_total", reason="decode") - before["decode"] == 1
    assert _value("bearwatch_inference_batch_seconds_count") >= 1
