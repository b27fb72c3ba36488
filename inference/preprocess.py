"""Reproducing the exported learner's inference preprocessing, fast.

fastai at inference does: ``PILImage.create`` (PIL decode, RGB) → the valid-split item
transforms (``Resize`` with crop, squish or pad; ``ToTensor``) → collate → the batch
transforms (``IntToFloatTensor``: /255, then ``Normalize``), skipping train-only
augmentations. We run the item transforms with fastai's own objects on PIL images in
worker threads (so every resize method is exactly fastai's), keep the batch in uint8
until it is on the device, and do the float conversion and normalisation there with the
same operations in the same order, so fp32 results match ``learn.predict``.

The tensor ("fast") path (inference.tensor_preprocess) replaces the item transforms with
torchvision decode and tensor resize where the pipeline is one it can reproduce
(``Preprocessor.tensor_resize``), within a measured tolerance of this exact path.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

import torch
from PIL import Image

from bearwatch.errors import ModelError
from inference.tensor_preprocess import TensorResize, tensor_resize_for


@dataclass(frozen=True)
class BatchStep:
    """One batch transform, applied on the device."""

    kind: str  # "div" or "normalize"
    div: float = 1.0
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None


@dataclass(frozen=True)
class Preprocessor:
    """What one exported learner needs done to a decoded frame."""

    item_pipeline: Any  # fastai Pipeline (valid split), PIL image -> uint8 CHW TensorImage
    batch_steps: tuple[BatchStep, ...]
    key: str  # models with equal keys share the resized tensors
    # The item pipeline as tensor ops for the fast path; None: only the exact path (and why).
    tensor_resize: TensorResize | None = None
    tensor_refusal: str = ""

    def item(self, image: Image.Image) -> torch.Tensor:
        from fastai.vision.core import PILImage  # fastai is heavy: loaded only where a model is used

        out = self.item_pipeline(PILImage(image))
        return torch.as_tensor(out)  # drop the fastai subclass: plain uint8 CHW

    def on(self, device: torch.device) -> Preprocessor:
        """The same preprocessing with its normalisation statistics moved to ``device`` once."""
        steps = tuple(
            replace(s, mean=s.mean.to(device), std=s.std.to(device)) if s.mean is not None and s.std is not None else s
            for s in self.batch_steps
        )
        return replace(self, batch_steps=steps)

    def batch(self, uint8_batch: torch.Tensor, device: torch.device) -> torch.Tensor:
        x = uint8_batch.to(device, non_blocking=True)
        for step in self.batch_steps:
            if step.kind == "div":
                x = x.float().div_(step.div)
            else:
                assert step.mean is not None and step.std is not None
                x = (x - step.mean) / step.std
        return x


def preprocessor_for(learner: Any) -> Preprocessor:
    """Read a learner's valid-split pipelines; refuse transforms we cannot reproduce."""
    from fastai.data.transforms import IntToFloatTensor, Normalize  # heavy: only where a model is used

    valid = learner.dls.valid
    steps: list[BatchStep] = []
    for tfm in valid.after_batch.fs:
        if getattr(tfm, "split_idx", None) == 0:
            continue  # a train-only augmentation: fastai skips it at inference too
        if isinstance(tfm, IntToFloatTensor):
            steps.append(BatchStep("div", div=float(tfm.div)))
        elif isinstance(tfm, Normalize):
            mean = torch.as_tensor(tfm.mean).detach().cpu().float().reshape(1, -1, 1, 1)
            std = torch.as_tensor(tfm.std).detach().cpu().float().reshape(1, -1, 1, 1)
            steps.append(BatchStep("normalize", mean=mean, std=std))
        else:
            raise ModelError(
                f"the model's batch transform {type(tfm).__name__} runs at inference and is not "
                "supported; export the learner with IntToFloatTensor/Normalize batch transforms only"
            )
    # The validation split (1): fastai's inference dataloader sets it, and it makes
    # Resize crop at the centre instead of at random.
    item_pipeline = copy.copy(valid.after_item)
    item_pipeline.split_idx = 1
    tensor_resize, refusal = tensor_resize_for(item_pipeline)
    # fastai's repr names every item transform with its settings (size, method, pad mode).
    return Preprocessor(item_pipeline=item_pipeline, batch_steps=tuple(steps), key=repr(item_pipeline),
                        tensor_resize=tensor_resize, tensor_refusal=refusal)
