"""Bulk commits, on SQLite and PostgreSQL: a batch's predictions go in with one insert
(COPY on PostgreSQL) built from arrays, its frames are marked done by claim token with
one update, whatever the batch size. The lease still decides who may commit, each frame
has one prediction per model, failures are retried then given up, and the rows stored are
the ones the per-row path stored before (what the dashboard and shadow read)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa
import torch
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Camera, Frame, FrameQueueEntry, FrameStatus, ModelVersion, Prediction, Site, utcnow
from inference.queue import Claim, ModelScores, claim_batch, commit_results, probabilities_json, release
from inference.registry import LoadedModel
from inference.runner import BatchOutput
from inference.scoring import model_scores
from tests.statements import statements_sent

LEASE_S = 60.0
CLASSES = ("bear", "deer", "empty")


def _model(factory: sessionmaker[Session], name: str, classes: tuple[str, ...] = CLASSES,
           positive: tuple[str, ...] = ("bear", "deer"), threshold: float = 0.5) -> LoadedModel:
    """A registered model version, as the worker holds it (no learner: the forward is not tested here)."""
    with factory.begin() as session:
        version = ModelVersion(name=name, path=f"{name}.pkl", sha256=name[0] * 64, classes=list(classes),
                               positive_classes=list(positive), threshold=threshold)
        session.add(version)
        session.flush()
        return LoadedModel(version.id, name, classes, positive, threshold, None, None)


def _frames(factory: sessionmaker[Session], n: int) -> list[int]:
    """n pending frames (queued by the database's triggers), their ids in order."""
    with factory.begin() as session:
        site = session.scalar(sa.select(Site)) or Site(name="north")
        session.add(site)
        session.flush()
        camera = session.scalar(sa.select(Camera)) or Camera(site_id=site.id, name="c", source="x.avi")
        session.add(camera)
        session.flush()
        start = utcnow() + timedelta(seconds=session.scalar(sa.select(sa.func.count()).select_from(Frame)) or 0)
        frames = [Frame(camera_id=camera.id, captured_at=start + timedelta(milliseconds=k), path=f"f/{k}.jpg",
                        sha256="0" * 64, size_bytes=1, width=1280, height=720) for k in range(n)]
        session.add_all(frames)
        session.flush()
        return [f.id for f in frames]


def _outputs(n: int, classes: int = len(CLASSES), seed: int = 0, extras: bool = True) -> BatchOutput:
    """A model's outputs as the runner gives them: softmax probabilities, a 512-d embedding
    whose values span float16's range (zero, subnormal, up to 10^4), an OOD score."""
    g = torch.Generator().manual_seed(seed)
    probabilities = torch.softmax(torch.randn(n, classes, generator=g) * 4, dim=1)
    scale = 10.0 ** torch.randint(-9, 5, (n, 512), generator=g)
    embeddings = torch.randn(n, 512, generator=g) * scale
    ood = torch.rand(n, generator=g) * 3
    return BatchOutput(probabilities=probabilities, embeddings=embeddings if extras else None, ood=ood if extras else None)


def _scores(claim: Claim, model: LoadedModel, seed: int = 0, skip: set[int] | frozenset[int] = frozenset()) -> ModelScores:
    ids = np.array([f.frame_id for f in claim.frames if f.frame_id not in skip], dtype=np.int64)
    return model_scores(model, ids, _outputs(len(ids), len(model.classes), seed))


def _old_rows(model: LoadedModel, frame_ids: list[int], out: BatchOutput) -> dict[tuple[int, int], dict[str, Any]]:
    """What the per-row path (a ScoreRow per frame and model, before bulk commits) stored."""
    positive_idx = [model.classes.index(c) for c in model.positive_classes]
    probs = out.probabilities.tolist()
    rows = {}
    for i, frame_id in enumerate(frame_ids):
        score = float(sum(probs[i][j] for j in positive_idx))
        rows[frame_id, model.version_id] = dict(
            probabilities=dict(zip(model.classes, probs[i], strict=True)), positive_score=score,
            flagged=score >= model.threshold, ood_score=float(out.ood[i]) if out.ood is not None else None,
            embedding=out.embeddings[i].numpy().astype(np.float16).tobytes() if out.embeddings is not None else None,
        )
    return rows


def _stored(factory: sessionmaker[Session]) -> dict[tuple[int, int], dict[str, Any]]:
    with factory() as session:
        return {
            (p.frame_id, p.model_version_id): dict(
                probabilities=p.probabilities, positive_score=p.positive_score, flagged=p.flagged,
                ood_score=p.ood_score, embedding=p.embedding)
            for p in session.scalars(sa.select(Prediction))
        }


def _frame_states(factory: sessionmaker[Session], ids: list[int]) -> list[tuple[FrameStatus, str | None]]:
    with factory() as session:
        rows = {i: (status, error) for i, status, error in
                session.execute(sa.select(Frame.id, Frame.status, Frame.last_error).where(Frame.id.in_(ids)))}
    return [rows[i] for i in ids]


def _queue(factory: sessionmaker[Session]) -> dict[int, tuple[str | None, int, str | None]]:
    """frame id: (claim token, attempts, last error) of every queued frame."""
    with factory() as session:
        rows = session.execute(sa.select(FrameQueueEntry.frame_id, FrameQueueEntry.claim_token,
                                         FrameQueueEntry.attempts, FrameQueueEntry.last_error))
        return {frame_id: (token, attempts, error) for frame_id, token, attempts, error in rows}


def _expire_leases(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:  # the worker holding them stalled; its leases ran out
        session.execute(sa.update(FrameQueueEntry).values(claimed_until=utcnow() - timedelta(seconds=1)))


def test_the_rows_stored_are_the_ones_the_per_row_path_stored(factory: sessionmaker[Session]) -> None:
    ids = _frames(factory, 24)
    out_full = _outputs(24, seed=1)
    # The threshold right at one frame's score (bear + deer): at the threshold is flagged, as before.
    bear, deer, _ = out_full.probabilities[5].tolist()
    full = _model(factory, "full", threshold=bear + deer)
    bare = _model(factory, "bare", classes=("bear", "empty"), positive=("bear",), threshold=0.3)  # no embedding, no OOD
    out_bare = _outputs(24, classes=2, seed=2, extras=False)
    claim = claim_batch(factory, 24, LEASE_S)
    frame_ids = np.array(ids, dtype=np.int64)

    scored = [model_scores(full, frame_ids, out_full), model_scores(bare, frame_ids, out_bare)]
    assert commit_results(factory, claim, scored, {}, max_attempts=3) == 24

    expected = _old_rows(full, ids, out_full) | _old_rows(bare, ids, out_bare)
    stored = _stored(factory)
    assert stored.keys() == expected.keys()
    for key, row in expected.items():  # exactly: floats, flags and the embedding's bytes
        assert stored[key] == row, key
    assert stored[ids[5], full.version_id]["flagged"]
    assert 0 < sum(r["flagged"] for r in stored.values()) < len(stored)
    with factory() as session:  # the JSON text itself, and the dashboard's read of one class
        texts, bears = {}, {}
        for frame_id, model_id, text, bear in session.execute(sa.select(
            Prediction.frame_id, Prediction.model_version_id, sa.cast(Prediction.probabilities, sa.Text),
            Prediction.probabilities["bear"].as_float(),
        )):
            texts[frame_id, model_id], bears[frame_id, model_id] = text, bear
    for key, row in expected.items():
        assert texts[key] == json.dumps(row["probabilities"])
        assert bears[key] == row["probabilities"]["bear"]


def test_a_worker_whose_lease_ran_out_and_was_taken_over_commits_nothing(factory: sessionmaker[Session]) -> None:
    ids = _frames(factory, 8)
    model = _model(factory, "m")
    zombie = claim_batch(factory, 8, LEASE_S)
    _expire_leases(factory)
    taker = claim_batch(factory, 8, LEASE_S)
    assert [f.frame_id for f in taker.frames] == ids

    assert commit_results(factory, zombie, [_scores(zombie, model, seed=1)], {}, max_attempts=3) == 0
    assert _stored(factory) == {}
    assert _queue(factory) == {i: (taker.token, 2, None) for i in ids}  # the taker's claim untouched
    assert _frame_states(factory, ids) == [(FrameStatus.PENDING, None)] * 8

    taken = _scores(taker, model, seed=2)
    assert commit_results(factory, taker, [taken], {}, max_attempts=3) == 8
    # The zombie wakes up again after the taker committed: still nothing.
    assert commit_results(factory, zombie, [_scores(zombie, model, seed=1)], {ids[0]: "cannot decode"},
                          max_attempts=1) == 0
    stored = _stored(factory)
    assert sorted(stored) == [(i, model.version_id) for i in ids]  # one prediction per frame and model
    assert [stored[i, model.version_id]["probabilities"]["bear"] for i in ids] == taken.probabilities[:, 0].tolist()
    assert _frame_states(factory, ids) == [(FrameStatus.SCORED, None)] * 8
    assert _queue(factory) == {}


def test_a_claim_given_back_commits_nothing(factory: sessionmaker[Session]) -> None:
    ids = _frames(factory, 4)
    model = _model(factory, "m")
    claim = claim_batch(factory, 4, LEASE_S)
    release(factory, claim)
    assert commit_results(factory, claim, [_scores(claim, model)], {}, max_attempts=3) == 0
    assert _stored(factory) == {}
    assert _queue(factory) == {i: (None, 0, None) for i in ids}


def test_a_frame_scored_again_keeps_one_prediction_per_model(factory: sessionmaker[Session]) -> None:
    ids = _frames(factory, 4)
    first = _model(factory, "first")
    claim = claim_batch(factory, 4, LEASE_S)
    assert commit_results(factory, claim, [_scores(claim, first, seed=1)], {}, max_attempts=3) == 4
    before = _stored(factory)
    second = _model(factory, "second")  # registered since
    with factory.begin() as session:  # an operator sets two frames back to pending: queued again
        session.execute(sa.update(Frame).where(Frame.id.in_(ids[:2])).values(status=FrameStatus.PENDING))

    again = claim_batch(factory, 4, LEASE_S)
    assert [f.frame_id for f in again.frames] == ids[:2]
    scored = [_scores(again, first, seed=3), _scores(again, second, seed=4)]
    assert commit_results(factory, again, scored, {}, max_attempts=3) == 2

    after = _stored(factory)
    assert sorted(after) == sorted([(i, first.version_id) for i in ids] + [(i, second.version_id) for i in ids[:2]])
    assert {k: v for k, v in after.items() if k[1] == first.version_id} == before  # the first ones kept
    assert _frame_states(factory, ids) == [(FrameStatus.SCORED, None)] * 4
    assert _queue(factory) == {}


def test_a_failing_frame_is_retried_then_failed_for_good_while_the_rest_are_scored(
    factory: sessionmaker[Session]
) -> None:
    broken, flaky, *fine = ids = _frames(factory, 4)
    model = _model(factory, "m")
    long_error = "cannot decode: " + "x" * 2000

    first = claim_batch(factory, 10, LEASE_S)
    failed = {broken: long_error, flaky: "read timeout"}
    assert commit_results(factory, first, [_scores(first, model, skip=set(failed))], failed, max_attempts=3) == 4
    assert _queue(factory) == {broken: (None, 1, long_error[:1000]), flaky: (None, 1, "read timeout")}
    assert _frame_states(factory, ids) == [(FrameStatus.PENDING, None)] * 2 + [(FrameStatus.SCORED, None)] * 2

    second = claim_batch(factory, 10, LEASE_S)
    assert [(f.frame_id, f.attempts) for f in second.frames] == [(broken, 2), (flaky, 2)]
    failed = {broken: long_error}
    assert commit_results(factory, second, [_scores(second, model, skip=set(failed))], failed, max_attempts=3) == 2
    assert _queue(factory) == {broken: (None, 2, long_error[:1000])}
    assert _frame_states(factory, [flaky]) == [(FrameStatus.SCORED, None)]  # its earlier error is not its result

    last = claim_batch(factory, 10, LEASE_S)
    assert [(f.frame_id, f.attempts) for f in last.frames] == [(broken, 3)]
    assert commit_results(factory, last, [], {broken: long_error}, max_attempts=3) == 1
    assert _frame_states(factory, ids) == [(FrameStatus.FAILED, long_error[:1000])] + [(FrameStatus.SCORED, None)] * 3
    assert _queue(factory) == {}
    assert sorted(_stored(factory)) == [(i, model.version_id) for i in [flaky, *fine]]


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The COPY statements sent through psycopg (they bypass SQLAlchemy's events): a spy,
    the real COPY runs."""
    sent: list[str] = []
    real = psycopg.Cursor.copy

    def spy(self: psycopg.Cursor[Any], statement: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(statement))
        return real(self, statement, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "copy", spy)
    yield sent


def _kind(sql: str) -> str:
    """"UPDATE frames", "INSERT predictions", "COPY predictions", "SELECT frame_queue"..."""
    verb = sql.split()[0].upper()
    table = re.search(r"(?:UPDATE|INTO|FROM|COPY)\s+(\w+)", sql, re.IGNORECASE)
    return f"{verb} {table.group(1) if table else ''}".strip()


def test_a_batch_of_256_is_committed_with_the_same_statements_as_a_batch_of_8(
    engine: sa.Engine, factory: sessionmaker[Session], copies: list[str]
) -> None:
    models = [_model(factory, "a"), _model(factory, "b")]
    kinds, texts = {}, {}
    for size in (8, 256):
        ids = _frames(factory, size)
        with factory.begin() as session:  # one frame on its last attempt: it fails for good
            session.execute(sa.update(FrameQueueEntry).where(FrameQueueEntry.frame_id == ids[1]).values(attempts=2))
        claim = claim_batch(factory, size, LEASE_S)
        assert [f.frame_id for f in claim.frames] == ids
        failed = {ids[0]: "cannot decode", ids[1]: "cannot decode"}  # retried, given up
        scored = [_scores(claim, m, skip=set(failed)) for m in models]
        copies.clear()
        with statements_sent(engine) as sent:
            assert commit_results(factory, claim, scored, failed, max_attempts=3) == size
        kinds[size] = [_kind(s.sql) for s in sent] + [_kind(c) for c in copies]
        texts[size] = [s.sql for s in sent] + copies
        with factory() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(Prediction)
                                  .where(Prediction.frame_id.in_(ids))) == 2 * (size - 2)
        assert _frame_states(factory, ids[:3]) == [
            (FrameStatus.PENDING, None), (FrameStatus.FAILED, "cannot decode"), (FrameStatus.SCORED, None)]
        assert _queue(factory) == {ids[0]: (None, 1, "cannot decode")}
        with factory.begin() as session:
            session.execute(sa.delete(FrameQueueEntry))
    assert kinds[8] == kinds[256]
    if engine.dialect.name == "postgresql":  # the frames as one array parameter: the same text
        assert texts[8] == texts[256]
    insert = "COPY predictions" if engine.dialect.name == "postgresql" else "INSERT predictions"
    data = sorted(k for k in kinds[256] if k.split()[0] in ("SELECT", "INSERT", "COPY", "UPDATE", "DELETE"))
    assert data == sorted([
        "SELECT frame_queue",  # the leases still held, locked
        "SELECT predictions",  # the ones already stored
        insert,
        "UPDATE frame_queue",  # the frame to retry: unclaimed, its error
        "UPDATE frames",  # the others' results
        "DELETE frame_queue",  # and out of the queue
    ])


@pytest.mark.parametrize("classes", [
    ("bear", "empty"),
    ('say "bear"', "100% sure", "ours brun é", "back\\slash", "日本"),
])
def test_probabilities_are_written_as_json_dumps_writes_them(classes: tuple[str, ...]) -> None:
    rng = np.random.default_rng(0)
    values = rng.dirichlet(np.ones(len(classes)), 50).astype(np.float32)
    values[0] = 0.0
    values[1, 0] = np.float32(1e-45)  # subnormal
    values[2, 0] = 1.0
    assert probabilities_json(classes, values) == [json.dumps(dict(zip(classes, row, strict=True)))
                                                   for row in values.tolist()]
    values[3, 0] = np.nan  # never from a softmax, but written as before
    assert probabilities_json(classes, values)[3] == json.dumps(dict(zip(classes, values[3].tolist(), strict=True)))
