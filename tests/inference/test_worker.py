"""The batch worker on real JPEGs, a real fastai export and both databases."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import torch
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.demo.footage import animals_at, events_for
from bearwatch.errors import ConfigError, ModelError
from bearwatch.schema import Frame, FrameQueueEntry, FrameStatus, ModelRole, ModelVersion, Prediction
from inference.queue import claim_batch, commit_results
from inference.registry import load_model
from inference.scoring import score_prepared
from inference.worker import MAX_PENDING_COMMITS, InferenceWorker, WorkerOptions
from ingest.store import FrameStore
from tests.conftest import wait_for
from tests.inference.helpers import SPEC, register, store_frames_at


def _bear_and_empty_times() -> tuple[list[float], list[float]]:
    bears = [(e.start_s + e.end_s) / 2 for e in events_for(SPEC) if e.kind == "bear"]
    empties = [t + 0.5 for t in range(0, int(SPEC.duration_s), 7) if not animals_at(SPEC, t + 0.5)]
    return bears[:3], empties[:3]


def _worker(factory: sessionmaker[Session], store: FrameStore, **options: object) -> InferenceWorker:
    worker = InferenceWorker(factory, store.root, WorkerOptions(device="cpu", **options))  # type: ignore[arg-type]
    worker.refresh_models()
    return worker


def test_worker_scores_every_frame_once_with_learn_predicts_probabilities(
    factory: sessionmaker[Session], tmp_path: Path, model_export_path: Path
) -> None:
    store = FrameStore(tmp_path / "frames")
    bears, empties = _bear_and_empty_times()
    ids = store_frames_at(factory, store, bears + empties)
    register(factory, model_export_path)
    worker = _worker(factory, store)
    assert worker.run_once() == len(ids)
    assert worker.run_once() == 0  # nothing left
    worker.close()
    with factory() as session:
        preds = {p.frame_id: p for p in session.scalars(sa.select(Prediction))}
        frames = {f.id: f for f in session.scalars(sa.select(Frame))}
    assert sorted(preds) == sorted(ids)
    assert all(f.status is FrameStatus.SCORED for f in frames.values())
    learn = worker.models[0].info.learner
    for frame_id in ids:
        _, _, probs = learn.predict(str(store.absolute(frames[frame_id].path)))
        stored = preds[frame_id].probabilities
        assert list(stored) == list(learn.dls.vocab)
        assert [stored[c] for c in learn.dls.vocab] == pytest.approx([float(p) for p in probs], abs=1e-4)
        assert preds[frame_id].positive_score == pytest.approx(stored["bear"])
        assert preds[frame_id].flagged == (stored["bear"] >= 0.5)
        embedding = np.frombuffer(preds[frame_id].embedding or b"", dtype=np.float16)
        assert embedding.size > 0 and np.isfinite(embedding).all()
    # No count of bears found: the tiny export tells bears from the rest only roughly (one
    # epoch at 32 px; a fresh install flagged 1 of 3 bears at a commit where it had found
    # 2). The demo model's accuracy is tested once, in tests/demo/test_demo_model.py.


def test_corrupt_and_truncated_jpegs_fail_with_an_error_while_the_rest_are_scored(
    factory: sessionmaker[Session], tmp_path: Path, model_export_path: Path
) -> None:
    store = FrameStore(tmp_path / "frames")
    ids = store_frames_at(factory, store, [1.0, 2.0, 3.0])
    with factory() as session:
        paths = [session.get(Frame, i).path for i in ids]  # type: ignore[union-attr]
    store.absolute(paths[0]).write_bytes(b"this is not a jpeg")
    data = store.absolute(paths[1]).read_bytes()
    store.absolute(paths[1]).write_bytes(data[: len(data) // 3])
    register(factory, model_export_path)
    worker = _worker(factory, store, max_attempts=2)
    assert worker.run_once() == 3
    with factory() as session:  # the broken ones wait for their second attempt
        queued = dict(session.execute(sa.select(FrameQueueEntry.frame_id, FrameQueueEntry.attempts)).all())
    assert queued == {ids[0]: 1, ids[1]: 1}
    assert worker.run_once() == 2
    assert worker.run_once() == 0  # no third attempt
    worker.close()
    with factory() as session:
        frames = {f.id: f for f in session.scalars(sa.select(Frame))}
        scored = set(session.scalars(sa.select(Prediction.frame_id)))
    assert frames[ids[0]].status is FrameStatus.FAILED and "cannot decode" in (frames[ids[0]].last_error or "")
    assert frames[ids[1]].status is FrameStatus.FAILED
    assert "cannot decode" in (frames[ids[1]].last_error or "")
    assert frames[ids[2]].status is FrameStatus.SCORED and scored == {ids[2]}


def test_a_worker_whose_lease_was_taken_cannot_commit(
    factory: sessionmaker[Session], tmp_path: Path, model_export_path: Path
) -> None:
    store = FrameStore(tmp_path / "frames")
    store_frames_at(factory, store, [1.0, 2.0])
    register(factory, model_export_path)
    worker = _worker(factory, store)
    late = claim_batch(factory, 8, lease_s=0.0)  # a paused worker: its lease expires at once
    preprocessors = {m.runner.preprocessor.key: m.runner.preprocessor for m in worker.models}
    rows = score_prepared(worker.models, worker.decoder.prepare(late.frames, preprocessors))
    assert worker.run_once() == 2  # another worker takes the frames over
    assert commit_results(factory, late, rows, {}, max_attempts=3) == 0  # the late commit changes nothing
    worker.close()
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Prediction)) == 2


def test_a_changed_model_file_is_refused_and_the_other_models_keep_scoring(
    factory: sessionmaker[Session], tmp_path: Path, model_export_path: Path
) -> None:
    store = FrameStore(tmp_path / "frames")
    ids = store_frames_at(factory, store, [1.0])
    copy = tmp_path / "challenger.pkl"
    shutil.copy(model_export_path, copy)
    register(factory, model_export_path, "demo")
    register(factory, copy, "challenger", ModelRole.CHALLENGER)
    with copy.open("ab") as fh:
        fh.write(b"tampered")
    with factory() as session:
        changed = session.scalars(sa.select(ModelVersion).where(ModelVersion.name == "challenger")).one()
    with pytest.raises(ModelError, match="changed since it was registered"):
        load_model(changed)
    worker = _worker(factory, store)
    assert [m.info.name for m in worker.models] == ["demo"]
    assert worker.run_once() == 1
    worker.close()
    with factory() as session:
        assert session.scalars(sa.select(Prediction.frame_id)).all() == ids


def test_several_models_share_one_decode_and_each_stores_its_prediction(
    factory: sessionmaker[Session], tmp_path: Path, model_export_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FrameStore(tmp_path / "frames")
    ids = store_frames_at(factory, store, [1.0, 2.0])
    register(factory, model_export_path, "demo")
    register(factory, model_export_path, "strict", ModelRole.CHALLENGER, threshold=0.99)
    worker = _worker(factory, store)
    opened: list[str] = []
    real_open = Image.open

    def counting_open(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(path))  # a spy: the real decoder still runs
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    assert worker.run_once() == 2
    worker.close()
    assert len(opened) == 2, "each frame decoded once for both models"
    with factory() as session:
        pairs = session.execute(sa.select(Prediction.frame_id, Prediction.model_version_id)).all()
    assert len(pairs) == 4 and {f for f, _ in pairs} == set(ids)


def test_run_stops_on_request_and_leaves_no_frame_claimed(
    factory: sessionmaker[Session], tmp_path: Path, model_export_path: Path
) -> None:
    store = FrameStore(tmp_path / "frames")
    store_frames_at(factory, store, [float(t) for t in range(12)])
    register(factory, model_export_path)
    stop = threading.Event()
    worker = InferenceWorker(factory, store.root, WorkerOptions(device="cpu", batch_size=4))
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    while True:  # stop as soon as the first batch is in
        with factory() as session:
            if session.scalar(sa.select(sa.func.count()).select_from(Prediction)):
                break
    stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive()
    with factory() as session:
        statuses = set(session.scalars(sa.select(Frame.status)))
        leased = session.scalar(sa.select(sa.func.count()).where(FrameQueueEntry.claimed_until.is_not(None)))
    assert leased == 0  # finished or released, never left leased
    assert FrameStatus.SCORED in statuses


def test_a_stopped_worker_gives_its_batches_back_without_decoding_them_to_the_end(
    factory: sessionmaker[Session], tmp_path: Path, model_export_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM (the stop event) while a batch is being decoded: the worker stops decoding
    and returns at once, the claimed frames go back to the queue unscored and their attempt
    is not counted. It used to decode the batch in hand and the prefetched one to the end."""
    import inference.decode

    store = FrameStore(tmp_path / "frames")
    ids = store_frames_at(factory, store, [float(t) for t in range(16)])
    register(factory, model_export_path)
    started: list[float] = []
    real = inference.decode._prepare_one

    def slow_decode(*args: object) -> object:  # a slow disk: 0.3 s a frame, one thread
        started.append(time.monotonic())
        time.sleep(0.3)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(inference.decode, "_prepare_one", slow_decode)
    worker = _worker(factory, store, batch_size=8, decode_threads=1)
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,))
    runner.start()
    wait_for("the first batch being decoded", lambda: len(started) >= 2)
    stop.set()
    stopped_at = time.monotonic()
    runner.join(timeout=60)
    assert not runner.is_alive()
    after_stop = [t for t in started if t > stopped_at]
    assert len(after_stop) <= 1, f"{len(after_stop)} frames were decoded after the stop (the batch had 8)"
    with factory() as session:
        statuses = set(session.scalars(sa.select(Frame.status).where(Frame.id.in_(ids))))
        queued = session.execute(
            sa.select(FrameQueueEntry.frame_id, FrameQueueEntry.claimed_until, FrameQueueEntry.attempts)
        ).all()
        assert session.scalar(sa.select(sa.func.count()).select_from(Prediction)) == 0
    assert statuses == {FrameStatus.PENDING}
    assert sorted(q.frame_id for q in queued) == sorted(ids)  # all back in the queue, unclaimed, no attempt counted
    assert all(q.claimed_until is None and q.attempts == 0 for q in queued), queued


def _run_in_thread(worker: InferenceWorker) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    return thread, stop


def _claim_tokens(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalar(sa.select(sa.func.count(sa.distinct(FrameQueueEntry.claim_token)))) or 0


def test_batches_are_claimed_ahead_up_to_the_prefetch_and_no_further(
    factory: sessionmaker[Session], tmp_path: Path, model_export_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a batch is scored, ``prefetch`` more are claimed and decoding (more than the one
    of before), and never more than that plus the commits in flight."""
    import inference.worker

    store = FrameStore(tmp_path / "frames")
    ids = store_frames_at(factory, store, [t * 0.9 for t in range(24)])
    register(factory, model_export_path)
    held_while_scoring: list[int] = []
    real_score = inference.worker.score_prepared

    def watched_score(*args: object) -> object:
        held_while_scoring.append(_claim_tokens(factory))
        return real_score(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(inference.worker, "score_prepared", watched_score)
    worker = _worker(factory, store, batch_size=4, prefetch=3)
    thread, stop = _run_in_thread(worker)
    wait_for("every frame scored", lambda: _scored_count(factory) == len(ids), timeout=120)
    stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert held_while_scoring[0] == 1 + 3, held_while_scoring  # the batch scored and three claimed ahead
    assert max(held_while_scoring) <= 1 + 3 + MAX_PENDING_COMMITS, held_while_scoring
    assert _predictions_per_frame(factory) == {i: 1 for i in ids}


def test_a_commit_that_fails_on_the_committing_thread_loses_no_frame(
    factory: sessionmaker[Session], tmp_path: Path, model_export_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database drops the first commit: the worker goes on, and that batch's frames come
    back when their lease ends and are scored, each exactly once."""
    import inference.worker

    store = FrameStore(tmp_path / "frames")
    ids = store_frames_at(factory, store, [t * 0.9 for t in range(12)])
    register(factory, model_export_path)
    real_commit = inference.worker.commit_results
    calls: list[threading.Thread] = []

    def flaky_commit(*args: object) -> int:
        calls.append(threading.current_thread())
        if len(calls) == 1:
            raise sa.exc.OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))
        return real_commit(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(inference.worker, "commit_results", flaky_commit)
    worker = _worker(factory, store, batch_size=4, lease_s=1.0)
    thread, stop = _run_in_thread(worker)
    wait_for("every frame scored", lambda: _scored_count(factory) == len(ids), timeout=120)
    stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert all(t is not threading.main_thread() and t is not thread for t in calls), "commits run off the scoring thread"
    assert len(calls) >= 4  # three batches, one of them twice
    assert _predictions_per_frame(factory) == {i: 1 for i in ids}
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(FrameQueueEntry)) == 0


def test_stopping_while_a_batch_is_scored_commits_it_and_gives_every_claim_ahead_back(
    factory: sessionmaker[Session], tmp_path: Path, model_export_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM during a forward pass with three batches claimed ahead: the scored batch is
    committed, the others go back to the queue unclaimed with no attempt counted."""
    import inference.worker

    store = FrameStore(tmp_path / "frames")
    ids = store_frames_at(factory, store, [t * 0.9 for t in range(20)])
    register(factory, model_export_path)
    stop = threading.Event()
    real_score = inference.worker.score_prepared

    def score_then_stop(*args: object) -> object:
        wait_for("three batches claimed ahead", lambda: _claim_tokens(factory) == 4)
        stop.set()  # the signal arrives during the forward pass
        return real_score(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(inference.worker, "score_prepared", score_then_stop)
    worker = _worker(factory, store, batch_size=4, prefetch=3)
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert _predictions_per_frame(factory) == {i: 1 for i in ids[:4]}  # the batch in hand, committed
    with factory() as session:
        queued = session.execute(
            sa.select(FrameQueueEntry.frame_id, FrameQueueEntry.claimed_until, FrameQueueEntry.attempts)
        ).all()
    assert sorted(q.frame_id for q in queued) == ids[4:]
    assert all(q.claimed_until is None and q.attempts == 0 for q in queued), queued


def test_batch_size_preprocessing_and_precision_follow_the_device(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    store = FrameStore(tmp_path / "frames")
    worker = InferenceWorker(factory, store.root, WorkerOptions(device="cpu"))
    assert worker.batch_size == 64 and worker.decoder.mode == "exact"  # on the CPU: today's exact path
    worker.close()
    fast = InferenceWorker(factory, store.root, WorkerOptions(device="cpu", preprocess="fast", batch_size=8))
    assert fast.batch_size == 8 and fast.decoder.mode == "fast"
    fast.close()
    with pytest.raises(ConfigError, match="precision"):
        InferenceWorker(factory, store.root, WorkerOptions(device="cpu", precision="fp8"))


def _scored_count(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalar(sa.select(sa.func.count()).where(Frame.status == FrameStatus.SCORED)) or 0


def _predictions_per_frame(factory: sessionmaker[Session]) -> dict[int, int]:
    with factory() as session:
        return dict(session.execute(
            sa.select(Prediction.frame_id, sa.func.count()).group_by(Prediction.frame_id)
        ).all())


@pytest.mark.timeout(600)
def test_a_compiled_model_padded_to_one_batch_shape_scores_as_the_eager_one(model_export_path: Path) -> None:
    """``--compile``: torch.compile (on the CPU here: inductor, a C++ compiler, a minute or
    two) with inputs padded to the batch size, so short batches reuse the one compilation;
    the padding rows change nothing. OOD features are copied out only when asked for."""
    from fastai.learner import load_learner

    from inference.runner import ModelRunner, RunnerOptions

    batch = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    eager = ModelRunner(load_learner(model_export_path, cpu=True), torch.device("cpu"))(batch)
    compiled = ModelRunner(load_learner(model_export_path, cpu=True), torch.device("cpu"),
                           options=RunnerOptions(compile=True, fixed_batch=8))
    compiled.warm_up()
    out = compiled(batch)
    assert out.probabilities.shape == eager.probabilities.shape == (3, 3)
    assert torch.allclose(out.probabilities, eager.probabilities, atol=1e-5)
    assert out.embeddings is not None and eager.embeddings is not None
    assert torch.allclose(out.embeddings, eager.embeddings, atol=1e-4)
    assert eager.ood_features is None  # scoring does not copy them
    features = compiled(batch[:2], features=True).ood_features
    assert features is not None and features.shape[0] == 2
