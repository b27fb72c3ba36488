"""Decoding claimed frames once, in parallel, into each model's uint8 input tensors."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image

from bearwatch.images import MAX_PIXELS, ImageTooLarge, check_image, read_image_file
from inference.preprocess import Preprocessor

# A second line of defence behind check_image: PIL warns past this and refuses
# (DecompressionBombError) past twice it, for any PIL decode in this process.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class FrameRef(Protocol):
    """A stored image to decode: an id to report it by, and its path under the decoder's
    root. A frame the worker claimed (inference.queue.ClaimedFrame) is one; so is a FrameFile."""

    @property
    def frame_id(self) -> int: ...

    @property
    def path(self) -> str: ...


@dataclass(frozen=True)
class FrameFile:
    """An image to decode that no worker claimed: a frame a backtest replays, a reference image."""

    frame_id: int
    path: str


@dataclass(frozen=True)
class PreparedBatch:
    frame_ids: tuple[int, ...]  # the frames that decoded, in batch order
    inputs: dict[str, torch.Tensor]  # preprocessor key -> (n, C, H, W) uint8
    errors: dict[int, str]  # frame id -> why it could not be used
    reasons: dict[int, str] = field(default_factory=dict)  # frame id -> failure metric reason


def _prepare_one(path: Path, what: str, preprocessors: Mapping[str, Preprocessor]) -> dict[str, torch.Tensor]:
    # A bounded read and the header's size first: a hostile stored file costs one frame,
    # never gigabytes (PIL would allocate the whole picture on convert).
    data = read_image_file(path, what)
    check_image(data, what)
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")  # what fastai's load_image does
    return {key: pre.item(rgb) for key, pre in preprocessors.items()}


class FrameDecoder:
    """A thread pool: PIL decodes and resizes with the GIL released, so threads scale."""

    def __init__(self, root: Path, threads: int, pin_memory: bool = False) -> None:
        self.root = root
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="decode")
        self.pin_memory = pin_memory

    def prepare(self, frames: Sequence[FrameRef], preprocessors: Mapping[str, Preprocessor]) -> PreparedBatch:
        futures = [self.pool.submit(_prepare_one, self.root / f.path, f.path, preprocessors) for f in frames]
        ok: list[tuple[int, dict[str, torch.Tensor]]] = []
        errors: dict[int, str] = {}
        reasons: dict[int, str] = {}
        for frame, future in zip(frames, futures, strict=True):
            try:
                ok.append((frame.frame_id, future.result()))
            except ImageTooLarge as exc:
                errors[frame.frame_id], reasons[frame.frame_id] = f"refused: {exc}", exc.reason
            except Exception as exc:  # noqa: BLE001 - a bad file fails that frame only
                errors[frame.frame_id] = f"cannot decode {frame.path}: {type(exc).__name__}: {exc}"
                reasons[frame.frame_id] = "decode"
        inputs = {}
        for key in preprocessors:
            if ok:
                batch = torch.stack([tensors[key] for _, tensors in ok])
                inputs[key] = batch.pin_memory() if self.pin_memory else batch
        return PreparedBatch(tuple(fid for fid, _ in ok), inputs, errors, reasons)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
