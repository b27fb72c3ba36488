"""Heat maps of flagged frames (inference.heatmap) by the real worker, with the tiny fastai
export, on both databases: a flagged frame gets a Grad-CAM map, an unflagged one none;
the map shows where an object is; it goes with its frame; and a map that cannot be made
costs no prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import torch
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.demo.footage import animals_at, events_for, placements_at
from bearwatch.schema import Frame, FrameStatus, ModelVersion, Prediction, PredictionHeatmap
from inference import heatmap
from inference.heatmap import MAX_GRID_SIDE, MIN_GRID_SIDE, cells_array
from inference.registry import load_model
from inference.worker import InferenceWorker, WorkerOptions
from ingest.store import FrameStore
from tests.inference.helpers import SPEC, register, store_frames_at


def _bear_and_empty(factory: sessionmaker[Session], store: FrameStore, model_export_path: Path) -> tuple[int, int, float]:
    """A frame with a bear and an empty one, and a model threshold between their bear scores
    (the tiny model tells them apart only roughly, so the threshold is set from its scores)."""
    bear_t = [(e.start_s + e.end_s) / 2 for e in events_for(SPEC) if e.kind == "bear"][0]
    empty_t = next(t + 0.5 for t in range(0, int(SPEC.duration_s), 7) if not animals_at(SPEC, t + 0.5))
    assert placements_at(SPEC, bear_t), "the bear is in view"
    bear, empty = store_frames_at(factory, store, [bear_t, empty_t])
    model_id = register(factory, model_export_path)
    with factory() as session:
        version = session.get(ModelVersion, model_id)
        learn = load_model(version).learner  # type: ignore[arg-type]
        paths = {i: store.absolute(session.get(Frame, i).path) for i in (bear, empty)}  # type: ignore[union-attr]
    score = {i: float(learn.predict(str(p))[2][list(learn.dls.vocab).index("bear")]) for i, p in paths.items()}
    if score[bear] < score[empty]:
        bear, empty = empty, bear  # whichever the model scores higher is the flagged one
    threshold = (score[bear] + score[empty]) / 2
    with factory.begin() as session:
        session.get(ModelVersion, model_id).threshold = threshold  # type: ignore[union-attr]
    return bear, empty, threshold


def _worker(factory: sessionmaker[Session], store: FrameStore) -> InferenceWorker:
    worker = InferenceWorker(factory, store.root, WorkerOptions(device="cpu"))
    worker.refresh_models()
    return worker


def _heatmaps(factory: sessionmaker[Session]) -> dict[int, PredictionHeatmap]:
    with factory() as session:
        rows = session.execute(sa.select(Prediction.frame_id, PredictionHeatmap)
                               .join(Prediction, Prediction.id == PredictionHeatmap.prediction_id)).all()
        session.expunge_all()
    return {frame_id: hm for frame_id, hm in rows}


def test_a_flagged_frame_gets_a_heat_map_of_where_the_object_is_and_an_unflagged_one_none(
    factory: sessionmaker[Session], tmp_path: Path, model_export_path: Path
) -> None:
    store = FrameStore(tmp_path / "frames")
    bear, empty, _ = _bear_and_empty(factory, store, model_export_path)
    worker = _worker(factory, store)
    assert worker.run_once() == 2
    worker.close()
    with factory() as session:
        flagged = dict(session.execute(sa.select(Prediction.frame_id, Prediction.flagged)).all())
    assert flagged == {bear: True, empty: False}

    maps = _heatmaps(factory)
    assert set(maps) == {bear}, "only the flagged frame has a heat map"
    hm = maps[bear]
    assert hm.method == "grad-cam"
    assert MIN_GRID_SIDE <= hm.grid_rows <= MAX_GRID_SIDE and MIN_GRID_SIDE <= hm.grid_cols <= MAX_GRID_SIDE
    assert len(hm.cells) == hm.grid_rows * hm.grid_cols < 300, "stored small"
    grid = cells_array(hm.grid_rows, hm.grid_cols, hm.cells)
    assert grid.max() == 255 and grid.min() < 128, "the map is not constant: some places count, others not"

    # Retention: deleting the frame (the sweeper's delete) takes its heat map with it.
    with factory.begin() as session:
        session.execute(sa.delete(Frame).where(Frame.id == bear))
    assert _heatmaps(factory) == {}


def test_the_map_follows_a_localized_object(
    factory: sessionmaker[Session], tmp_path: Path, model_export_path: Path
) -> None:
    """The same model, the same bright square on a flat background in two places: the map's
    strongest region moves with the square (Grad-CAM is computed per frame, not a fixed
    pattern of the model)."""
    from tests.inference.helpers import store_images

    def square_at(x: int, y: int) -> np.ndarray:
        image = np.full((240, 320, 3), 90, np.uint8)
        image[y:y + 80, x:x + 80] = (30, 60, 200)
        return image

    store = FrameStore(tmp_path / "frames")
    left, right = store_images(factory, store, [square_at(10, 80), square_at(230, 80)])
    register(factory, model_export_path, threshold=0.0)  # every frame flagged
    worker = _worker(factory, store)
    assert worker.run_once() == 2
    worker.close()
    maps = _heatmaps(factory)
    assert set(maps) == {left, right}
    grids = {i: cells_array(m.grid_rows, m.grid_cols, m.cells).astype(float) for i, m in maps.items()}
    assert all(g.std() > 0 for g in grids.values()), "neither map is constant"
    assert not np.array_equal(grids[left], grids[right]), "the map depends on where the object is"


def test_a_heat_map_that_cannot_be_made_costs_no_prediction(
    factory: sessionmaker[Session], tmp_path: Path, model_export_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FrameStore(tmp_path / "frames")
    bear, empty, _ = _bear_and_empty(factory, store, model_export_path)

    def broken(*_args: object, **_kwargs: object) -> list[np.ndarray]:
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(heatmap.GradCam, "maps", broken)
    before = heatmap.HEATMAP_FAILURES.labels("compute")._value.get()
    worker = _worker(factory, store)
    assert worker.run_once() == 2
    worker.close()
    with factory() as session:
        statuses = set(session.scalars(sa.select(Frame.status)))
        flagged = dict(session.execute(sa.select(Prediction.frame_id, Prediction.flagged)).all())
    assert statuses == {FrameStatus.SCORED} and flagged == {bear: True, empty: False}
    assert _heatmaps(factory) == {}
    assert heatmap.HEATMAP_FAILURES.labels("compute")._value.get() == before + 1


@pytest.mark.parametrize("size", [128, 32])
def test_grad_cam_equals_a_textbook_grad_cam_of_the_whole_model(size: int) -> None:
    """At 128 px the body's last map (4x4) is explained from the scoring pass's output, the
    head alone run again; at 32 px (1x1) the deepest stage with 4x4 cells, the body run
    again from the kept input. Both equal Grad-CAM computed the plain way: the whole model
    with gradients, the feature map's gradient from a backward hook."""
    from fastai.vision.all import create_vision_model, resnet18

    torch.manual_seed(0)
    model = create_vision_model(resnet18, n_out=3, pretrained=False).eval()
    gradcam = heatmap.GradCam(model)
    x = torch.rand(4, 3, size, size)
    with torch.inference_mode():
        model(x)  # the scoring pass
    got = gradcam.maps([1, 3], [0])

    stages = list(model[0])
    sizes = []
    y = x
    with torch.no_grad():
        for stage in stages:
            y = stage(y)
            sizes.append(min(y.shape[2:]))
    pick = max(i for i, s in enumerate(sizes) if s >= MIN_GRID_SIDE)
    assert (pick == len(stages) - 1) == (size == 128)
    kept: dict[str, torch.Tensor] = {}
    handle = stages[pick].register_forward_hook(lambda _m, _i, out: kept.__setitem__("map", out))
    handle_grad = stages[pick].register_full_backward_hook(lambda _m, _gi, go: kept.__setitem__("grad", go[0]))
    model.zero_grad()
    model(x[[1, 3]])[:, 0].sum().backward()
    handle.remove()
    handle_grad.remove()
    weights = kept["grad"].mean(dim=(2, 3), keepdim=True)
    reference = torch.relu((weights * kept["map"].detach()).sum(dim=1))
    for grid, ref in zip(got, reference, strict=True):
        expected = (ref / ref.max() * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        assert grid.shape == expected.shape
        assert np.abs(grid.astype(int) - expected.astype(int)).max() <= 1
