"""The tensor ("fast") preprocessing path: torchvision JPEG decode and fastai's valid-split
``Resize`` reproduced with tensor ops, on the CPU or on a CUDA device (nvJPEG).

fastai's item pipeline at inference is ``Resize`` (crop, squish or pad) then ``ToTensor`` on a
PIL image. :class:`TensorResize` does the same integer box arithmetic as fastai 2.8's
``Resize.encodes`` / ``crop_pad`` at valid time (centre crop, ``int()`` truncation), pads with
the same mode, and resizes with torchvision's antialiased bilinear resize, which follows PIL's
``BILINEAR`` filter (on the CPU's uint8 kernel to within one uint8 level; see
tests/inference/test_fast_preprocess.py for the measured tolerance). Anything else in the item
pipeline cannot be reproduced: :func:`tensor_resize_for` says why, and the decoder then runs the
exact PIL+fastai path for that model (with a warning), so a model is never scored wrongly.

On CUDA the resize runs in float and is rounded back to uint8 (torchvision's path for uint8
on the GPU); emulated on the CPU it is also within one level of PIL. nvJPEG's decode itself is
not libjpeg's and has not been measured here (no GPU). torchvision 0.29 deprecates its image
decoders in favour of TorchCodec: ``decode_jpeg`` warns (DeprecationWarning) on each call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

# torchvision ships no type information (pyproject's mypy overrides do not list it yet)
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

METHODS = ("crop", "squish", "pad")
PAD_MODES = ("zeros", "border", "reflection")


@dataclass(frozen=True)
class Box:
    """Where fastai crops (negative offsets or a size past the edge: it pads there)."""

    left: int
    top: int
    width: int
    height: int


@dataclass(frozen=True)
class TensorResize:
    """fastai's ``Resize`` at valid time, on uint8 (..., 3, H, W) tensors."""

    width: int
    height: int
    method: str  # one of METHODS
    pad_mode: str  # one of PAD_MODES

    def box(self, width: int, height: int) -> Box:
        """fastai's ``Resize.encodes`` with pcts (0.5, 0.5), in its order of float operations."""
        if self.method == "squish":
            return Box(0, 0, width, height)
        by_width, by_height = width / self.width, height / self.height
        # crop: the larger scale that fits inside (fastai picks with <), pad: the one that covers (>)
        use_width = by_width < by_height if self.method == "crop" else by_width > by_height
        m = by_width if use_width else by_height
        crop_w, crop_h = int(m * self.width), int(m * self.height)
        # int() truncates towards zero, also for the negative offsets of a pad
        return Box(int(0.5 * (width - crop_w)), int(0.5 * (height - crop_h)), crop_w, crop_h)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Frames of one size, (3, H, W) or (n, 3, H, W) uint8, to the model's input size."""
        height, width = images.shape[-2:]
        x = crop_pad(images, self.box(width, height), self.pad_mode)
        return tvf.resize(
            x, [self.height, self.width], interpolation=InterpolationMode.BILINEAR, antialias=True
        )


def _reflect(index: torch.Tensor, n: int) -> torch.Tensor:
    """numpy's ``np.pad(mode="reflect")`` index map (edge not repeated), any pad width."""
    if n == 1:
        return torch.zeros_like(index)
    period = 2 * (n - 1)
    index = index.remainder(period)
    return torch.where(index >= n, period - index, index)


def crop_pad(images: torch.Tensor, box: Box, pad_mode: str) -> torch.Tensor:
    """fastai's ``_do_crop_pad`` on a PIL image (crop inside the picture, then torchvision's
    PIL pad, i.e. ``np.pad``, for the part outside), on the last two dimensions."""
    height, width = images.shape[-2:]
    left, top = max(box.left, 0), max(box.top, 0)
    right, bottom = min(box.left + box.width, width), min(box.top + box.height, height)
    x = images[..., top:bottom, left:right]
    pads = (max(-box.left, 0), max(box.left + box.width - width, 0),
            max(-box.top, 0), max(box.top + box.height - height, 0))  # left, right, top, bottom
    if not any(pads):
        return x
    if pad_mode == "zeros":
        return torch.nn.functional.pad(x, pads, mode="constant", value=0)
    # Index maps rather than F.pad: torch's reflect needs a pad narrower than the picture,
    # np.pad (what fastai uses) reflects again and again; edge = clamp.
    for dim, before, after in ((-2, pads[2], pads[3]), (-1, pads[0], pads[1])):
        if before or after:  # a gather only along a padded side: an identity one costs as much
            n = x.shape[dim]
            index = torch.arange(-before, n + after, device=x.device)
            x = x.index_select(dim, index.clamp(0, n - 1) if pad_mode == "border" else _reflect(index, n))
    return x


def tensor_resize_for(item_pipeline: Any) -> tuple[TensorResize | None, str]:
    """The tensor equivalent of a learner's valid-split item pipeline, or None and why not.

    Reproducible: train-only transforms (skipped at valid time), ``ToTensor``, and one
    ``Resize`` with bilinear resampling, probability 1 and a known method and pad mode."""
    from fastai.data.transforms import ToTensor  # heavy: only where a model is used
    from fastai.vision.augment import Resize
    from PIL import Image

    resize: TensorResize | None = None
    for tfm in item_pipeline.fs:
        name = type(tfm).__name__
        if getattr(tfm, "split_idx", None) == 0 or isinstance(tfm, ToTensor):
            continue  # train-only: fastai skips it at inference; ToTensor: we make CHW uint8 anyway
        if type(tfm) is not Resize:
            return None, f"item transform {name} has no tensor equivalent"
        if resize is not None:
            return None, "more than one Resize item transform"
        if tfm.mode != Image.Resampling.BILINEAR or getattr(tfm, "p", 1.0) != 1.0:
            return None, f"{tfm!r}: only bilinear resampling, applied always, has a tensor equivalent"
        method, pad_mode = str(tfm.method), str(tfm.pad_mode)
        if method not in METHODS or pad_mode not in PAD_MODES:
            return None, f"{tfm!r}: method {method!r} or pad mode {pad_mode!r} unknown"
        width, height = tfm.size  # fastai stores (width, height)
        resize = TensorResize(int(width), int(height), method, pad_mode)
    if resize is None:
        return None, "no Resize item transform (frames of different sizes cannot be batched)"
    return resize, ""


def as_byte_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def decode_jpeg_cpu(data: bytes) -> torch.Tensor:
    """A JPEG file's pixels, (3, H, W) uint8 RGB, with libjpeg-turbo (the GIL released);
    raises on anything it refuses (the caller falls back to PIL). EXIF orientation is not
    applied, as PIL's ``convert("RGB")`` does not."""
    return decode_jpeg(as_byte_tensor(data), mode=ImageReadMode.RGB)


def decode_jpegs_cuda(files: Sequence[bytes], device: torch.device) -> list[torch.Tensor | None]:
    """JPEG files decoded by nvJPEG on ``device`` in one batched call; when the batch raises,
    frame by frame, with None for each frame nvJPEG refuses (progressive or CMYK JPEGs on
    some versions, broken files). Untested here: no CUDA on the development machine."""
    if not files:
        return []
    tensors = [as_byte_tensor(d) for d in files]
    try:
        return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device))
    except Exception:  # noqa: BLE001 - some frame of the batch is refused: find which
        decoded: list[torch.Tensor | None] = []
        for t in tensors:
            try:
                decoded.append(decode_jpeg(t, mode=ImageReadMode.RGB, device=device))
            except Exception:  # noqa: BLE001 - that frame goes through the CPU path
                decoded.append(None)
        return decoded
