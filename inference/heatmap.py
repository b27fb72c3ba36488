"""Class-activation heat maps of flagged frames: where the model looked.

Grad-CAM (Selvaraju et al.) on a fastai ``vision_learner`` (``model[0]`` the body,
``model[1]`` the head): the gradient of the positive classes' logits with respect to a
feature map of the body, averaged over the map to weigh its channels; the weighted sum,
ReLU. The feature map is the body's last one unless that is coarser than
``MIN_GRID_SIDE`` cells (a small input: the tiny test model's 32 px give a 1x1 map),
then the deepest stage that still has that many. The map is stored as it is, at most
``MAX_GRID_SIDE`` cells a side, in uint8 (255 the strongest cell, a few hundred bytes);
the dashboard upsamples it over the frame and loads no model.

Only flagged frames (about 1%) get one, from the worker's scoring pass: a forward hook
keeps the body's input and output. That pass runs in inference mode, so the flagged rows
go through part of the model once more with gradients: the head alone, from the body's
output (the usual case: 7x7 at 224 px); for a small input, the body from the deepest
usable stage on (its earlier stages without gradients). No second decode or preprocessing.
A heat map that cannot be computed or stored is logged and counted
(``bearwatch_heatmap_failures_total``); the predictions are committed before and
without it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
import torch
import torch.nn.functional as F
from prometheus_client import Counter
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import write_transaction
from bearwatch.schema import Prediction, PredictionHeatmap

log = logging.getLogger(__name__)

METHOD = "grad-cam"
MIN_GRID_SIDE = 4
MAX_GRID_SIDE = 14

HEATMAPS_STORED = Counter("bearwatch_heatmaps_stored_total", "Heat maps of flagged frames stored")
HEATMAP_FAILURES = Counter(
    "bearwatch_heatmap_failures_total", "Heat maps of flagged frames not made (the predictions were kept)", ["stage"]
)


@dataclass(frozen=True)
class HeatmapRow:
    frame_id: int
    model_version_id: int
    grid_rows: int
    grid_cols: int
    cells: bytes  # grid_rows * grid_cols uint8, row-major


def cells_array(rows: int, cols: int, cells: bytes) -> np.ndarray:
    """A stored heat map as a (rows, cols) uint8 array."""
    return np.frombuffer(cells, dtype=np.uint8).reshape(rows, cols)


def _body_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    if isinstance(model, torch.nn.Sequential) and len(model) == 2:
        return model[0], model[1]
    return None


class GradCam:
    """Grad-CAM for one loaded model (the runner's module, on its device). A hook keeps the
    body's input and output of the latest forward pass; :meth:`maps` explains chosen rows."""

    def __init__(self, model: torch.nn.Module) -> None:
        parts = _body_and_head(model)
        if parts is None:
            raise ValueError("not a fastai vision_learner model (body, head)")
        self.body, self.head = parts
        self._stages: list[torch.nn.Module] = list(self.body) if isinstance(self.body, torch.nn.Sequential) else [self.body]
        self._input: torch.Tensor | None = None
        self._output: torch.Tensor | None = None
        self._pick: int | None = None  # the stage explained when the body's last map is too coarse
        self.body.register_forward_hook(self._keep)

    def _keep(self, _module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        self._input, self._output = inputs[0], output

    def forget(self) -> None:
        self._input = self._output = None

    def maps(self, rows: Sequence[int], class_indices: Sequence[int]) -> list[np.ndarray]:
        """The heat maps (uint8 grids) of ``rows`` of the latest forward pass, for the sum of
        the logits of ``class_indices``."""
        if not rows:
            return []
        if self._input is None or self._output is None:
            raise RuntimeError("no forward pass to explain")
        with torch.inference_mode(False), torch.enable_grad():
            # Rows are independent in eval mode (batch norm uses its running statistics),
            # so one backward pass of the summed logits gives every row its own gradient.
            index = torch.as_tensor(list(rows), device=self._input.device)
            if _usable(self._output):
                # The usual case (224 px: 7x7): the body's output from the scoring pass;
                # only the head runs again.
                fmap = self._output.index_select(0, index).clone().float().requires_grad_(True)
                logits = self.head(fmap)
            else:
                fmap, logits = self._from_input(self._input.index_select(0, index).clone().float())
            target = logits.float()[:, list(class_indices)].sum()
            (grads,) = torch.autograd.grad(target, fmap)
            weights = grads.float().mean(dim=(2, 3), keepdim=True)
            cam = F.relu((weights * fmap.detach().float()).sum(dim=1, keepdim=True))  # (n, 1, h, w)
        return [_to_grid(c[0]) for c in cam.cpu()]

    def _from_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A small input: the body again from the preprocessed input, without gradients up
        to the deepest stage with a usable map (found once), with them after it."""
        if self._pick is None:
            with torch.no_grad():
                shapes, y = [], x
                for stage in self._stages:
                    y = stage(y)
                    shapes.append(y)
            self._pick = _deepest_usable(shapes)
        with torch.no_grad():
            for stage in self._stages[: self._pick + 1]:
                x = stage(x)
        fmap = x.clone().float().requires_grad_(True)
        y = fmap
        for stage in self._stages[self._pick + 1:]:
            y = stage(y)
        return fmap, self.head(y)


def _usable(fmap: torch.Tensor) -> bool:
    return fmap.dim() == 4 and min(fmap.shape[2:]) >= MIN_GRID_SIDE


def _deepest_usable(features: list[torch.Tensor]) -> int:
    """The last 4-d feature map with at least MIN_GRID_SIDE cells a side, else the last 4-d one."""
    four_d = [i for i, f in enumerate(features) if f.dim() == 4]
    if not four_d:
        raise ValueError("the body gives no spatial feature map")
    usable = [i for i in four_d if _usable(features[i])]
    return usable[-1] if usable else four_d[-1]


def _to_grid(cam: torch.Tensor) -> np.ndarray:
    h, w = cam.shape
    if h > MAX_GRID_SIDE or w > MAX_GRID_SIDE:
        cam = F.adaptive_avg_pool2d(cam[None, None], (min(h, MAX_GRID_SIDE), min(w, MAX_GRID_SIDE)))[0, 0]
    top = float(cam.max())
    scaled = cam / top * 255.0 if top > 0 else torch.zeros_like(cam)
    return scaled.round().clamp(0, 255).to(torch.uint8).numpy()


def gradcam_for(model: torch.nn.Module, name: str) -> GradCam | None:
    """A Grad-CAM for ``model``, or None (logged) when its architecture is not a fastai
    vision learner's: it is then scored without heat maps."""
    try:
        return GradCam(model)
    except (ValueError, TypeError) as exc:
        log.warning("no heat maps for model %s: %s", name, exc)
        return None


def heatmap_rows(cam: GradCam, frame_ids: Sequence[int], flagged_rows: Sequence[int],
                 class_indices: Sequence[int], model_version_id: int) -> list[HeatmapRow]:
    grids = cam.maps(flagged_rows, class_indices)
    return [
        HeatmapRow(frame_ids[r], model_version_id, int(g.shape[0]), int(g.shape[1]), g.tobytes())
        for r, g in zip(flagged_rows, grids, strict=True)
    ]


def store_heatmaps(factory: sessionmaker[Session], rows: Sequence[HeatmapRow]) -> int:
    """Attach the heat maps to their (committed) predictions; returns how many were stored.
    A prediction that already has one (scored again after a lost lease) keeps it; one that
    is not there (its frame deleted meanwhile, or another worker's lease) gets none."""
    if not rows:
        return 0
    with write_transaction(factory) as session:
        return _insert(session, rows)


def _insert(session: Session, rows: Sequence[HeatmapRow]) -> int:
    frame_ids = sorted({r.frame_id for r in rows})
    ids = {
        (frame_id, model_id): pid
        for pid, frame_id, model_id in session.execute(
            sa.select(Prediction.id, Prediction.frame_id, Prediction.model_version_id)
            .where(Prediction.frame_id.in_(frame_ids), Prediction.flagged)
        )
    }
    have = set(session.scalars(sa.select(PredictionHeatmap.prediction_id)
                               .where(PredictionHeatmap.prediction_id.in_(list(ids.values())))))
    new: list[dict[str, Any]] = []
    for r in rows:
        pid = ids.get((r.frame_id, r.model_version_id))
        if pid is None or pid in have:
            continue
        have.add(pid)
        new.append(dict(prediction_id=pid, method=METHOD, grid_rows=r.grid_rows, grid_cols=r.grid_cols, cells=r.cells))
    if new:
        session.execute(sa.insert(PredictionHeatmap), new)
    return len(new)
