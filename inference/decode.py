"""Decoding claimed frames once, in parallel, into each model's uint8 input tensors."""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image

from bearwatch.images import MAX_PIXELS, ImageTooLarge, check_image, is_jpeg, read_image_file
from inference.preprocess import Preprocessor
from inference.tensor_preprocess import decode_jpeg_cpu, decode_jpegs_cuda

log = logging.getLogger(__name__)

# A second line of defence behind check_image: PIL warns past this and refuses
# (DecompressionBombError) past twice it, for any PIL decode in this process.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


PREPROCESS_MODES = ("exact", "fast")


def resolve_preprocess(requested: str, device: torch.device) -> str:
    """The preprocessing path to use: "auto" is the tensor path on CUDA, PIL+fastai on the CPU."""
    if requested == "auto":
        return "fast" if device.type == "cuda" else "exact"
    if requested not in PREPROCESS_MODES:
        raise ValueError(f"unknown preprocess mode {requested!r}: expected auto, {', '.join(PREPROCESS_MODES)}")
    return requested


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


def _checked_bytes(path: Path, what: str) -> bytes:
    # A bounded read and the header's size first: a hostile stored file costs one frame,
    # never gigabytes (a decoder would allocate the whole picture).
    data = read_image_file(path, what)
    check_image(data, what)
    return data


def _exact(data: bytes, preprocessors: Mapping[str, Preprocessor]) -> dict[str, torch.Tensor]:
    """PIL decode and fastai's own item transforms: exactly what ``learn.predict`` sees."""
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")  # what fastai's load_image does
    return {key: pre.item(rgb) for key, pre in preprocessors.items()}


def _prepare_one(path: Path, what: str, preprocessors: Mapping[str, Preprocessor]) -> dict[str, torch.Tensor]:
    """The exact path for one frame."""
    return _exact(_checked_bytes(path, what), preprocessors)


def _split(preprocessors: Mapping[str, Preprocessor]) -> tuple[dict[str, Preprocessor], dict[str, Preprocessor]]:
    """(those the tensor path can do, those only the exact path can)."""
    tensor = {k: p for k, p in preprocessors.items() if p.tensor_resize is not None}
    return tensor, {k: p for k, p in preprocessors.items() if p.tensor_resize is None}


def _prepare_fast_one(path: Path, what: str, preprocessors: Mapping[str, Preprocessor]) -> dict[str, torch.Tensor]:
    """The tensor path for one frame on the CPU (torchvision's libjpeg-turbo decode and the
    tensor resize both release the GIL). A file that is not a JPEG, or one torchvision
    refuses, goes through the exact path, as do models the tensor path cannot reproduce."""
    data = _checked_bytes(path, what)
    tensor, exact = _split(preprocessors)
    pixels = None
    if tensor and is_jpeg(data):
        try:
            pixels = decode_jpeg_cpu(data)
        except Exception:  # noqa: BLE001 - refused here (e.g. truncated): PIL decides, as on the exact path
            pixels = None
    if pixels is None:
        return _exact(data, preprocessors)
    out = {key: pre.tensor_resize(pixels) for key, pre in tensor.items() if pre.tensor_resize is not None}
    return out | (_exact(data, exact) if exact else {})


def _failure(path: str, exc: BaseException) -> tuple[str, str]:
    """A frame's error message and failure metric reason."""
    if isinstance(exc, ImageTooLarge):
        return f"refused: {exc}", exc.reason
    return f"cannot decode {path}: {type(exc).__name__}: {exc}", "decode"


class FrameDecoder:
    """Decodes a batch in a thread pool, on one of two paths (``mode``):

    - "exact": PIL decode and fastai's item transforms, with the GIL released, so threads scale;
    - "fast": torchvision JPEG decode and the tensor resize (inference.tensor_preprocess): in the
      pool on the CPU; on CUDA the pool reads the files and nvJPEG decodes the batch on the
      device, where the inputs stay. Frames the tensor decoder refuses take the exact path.
    """

    def __init__(
        self,
        root: Path,
        threads: int,
        pin_memory: bool = False,
        mode: str = "exact",
        device: torch.device | None = None,
    ) -> None:
        if mode not in PREPROCESS_MODES:
            raise ValueError(f"unknown preprocess mode {mode!r}: expected one of {', '.join(PREPROCESS_MODES)}")
        self.root = root
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="decode")
        self.pin_memory = pin_memory
        self.mode = mode
        self.device = device if device is not None else torch.device("cpu")
        self._warned: set[str] = set()

    def prepare(self, frames: Sequence[FrameRef], preprocessors: Mapping[str, Preprocessor]) -> PreparedBatch:
        if self.mode == "fast":
            self._warn_exact_only(preprocessors)
        if self.mode == "fast" and self.device.type == "cuda":
            return self._prepare_cuda(frames, preprocessors)
        one = _prepare_fast_one if self.mode == "fast" else _prepare_one
        futures = [self.pool.submit(one, self.root / f.path, f.path, preprocessors) for f in frames]
        results: list[dict[str, torch.Tensor] | BaseException] = []
        for future in futures:
            try:
                results.append(future.result())
            except Exception as exc:  # noqa: BLE001 - a bad file fails that frame only
                results.append(exc)
        return self._assemble(frames, results, preprocessors, pin=self.pin_memory)

    def _warn_exact_only(self, preprocessors: Mapping[str, Preprocessor]) -> None:
        for key, pre in preprocessors.items():
            if pre.tensor_resize is None and key not in self._warned:
                self._warned.add(key)
                log.warning("fast preprocessing cannot reproduce a model's item pipeline (%s); that model's "
                            "inputs take the exact PIL+fastai path: %s", pre.tensor_refusal, key)

    def _prepare_cuda(self, frames: Sequence[FrameRef], preprocessors: Mapping[str, Preprocessor]) -> PreparedBatch:
        """Reads in the pool, nvJPEG decode of the batch, tensor resize grouped by frame size,
        all on the device. Untested here: no CUDA on the development machine."""
        tensor, exact = _split(preprocessors)
        reads = [self.pool.submit(_checked_bytes, self.root / f.path, f.path) for f in frames]
        files: dict[int, bytes] = {}
        failed: dict[int, BaseException] = {}
        for i, read in enumerate(reads):
            try:
                files[i] = read.result()
            except Exception as exc:  # noqa: BLE001 - a bad file fails that frame only
                failed[i] = exc
        jpegs = [i for i, data in files.items() if is_jpeg(data)] if tensor else []
        decoded = decode_jpegs_cuda([files[i] for i in jpegs], self.device)
        pixels = {i: image for i, image in zip(jpegs, decoded, strict=True) if image is not None}
        # The exact path on the CPU, in the pool while the device resizes: every model for the
        # frames nvJPEG did not decode, and the models only the exact path can do.
        fallback = {
            i: self.pool.submit(_exact, data, exact if i in pixels else preprocessors)
            for i, data in files.items() if exact or i not in pixels
        }
        outputs: dict[int, dict[str, torch.Tensor]] = {i: {} for i in files}
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, image in pixels.items():
            by_size.setdefault(tuple(image.shape), []).append(i)
        for indices in by_size.values():
            stacked = torch.stack([pixels[i] for i in indices])
            for key, pre in tensor.items():
                assert pre.tensor_resize is not None  # _split
                for i, row in zip(indices, pre.tensor_resize(stacked), strict=True):
                    outputs[i][key] = row
        for i, future in fallback.items():
            try:
                outputs[i] |= {k: v.to(self.device, non_blocking=True) for k, v in future.result().items()}
            except Exception as exc:  # noqa: BLE001 - PIL refuses it too: that frame fails
                failed[i] = exc
        results = [failed[i] if i in failed else outputs[i] for i in range(len(frames))]
        return self._assemble(frames, results, preprocessors, pin=False)

    @staticmethod
    def _assemble(
        frames: Sequence[FrameRef],
        results: Sequence[dict[str, torch.Tensor] | BaseException],
        preprocessors: Mapping[str, Preprocessor],
        pin: bool,
    ) -> PreparedBatch:
        ok: list[tuple[int, dict[str, torch.Tensor]]] = []
        errors: dict[int, str] = {}
        reasons: dict[int, str] = {}
        for frame, result in zip(frames, results, strict=True):
            if isinstance(result, BaseException):
                errors[frame.frame_id], reasons[frame.frame_id] = _failure(frame.path, result)
            else:
                ok.append((frame.frame_id, result))
        inputs = {}
        for key in preprocessors:
            if ok:
                batch = torch.stack([tensors[key] for _, tensors in ok])
                inputs[key] = batch.pin_memory() if pin and batch.device.type == "cpu" else batch
        return PreparedBatch(tuple(fid for fid, _ in ok), inputs, errors, reasons)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
