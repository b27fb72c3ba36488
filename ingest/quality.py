"""Frame checks (what is rejected) and the image statistics stored with every kept frame.

Rejections are camera problems, not scenes: an empty or undecodable frame, an all-black
frame (a dead sensor or a covered lens), a uniform grey frame (what decoders produce
from a broken stream), a frozen picture (the encoder repeats one image), and a size
outside sane bounds. Kept frames carry brightness, contrast, sharpness (variance of the
Laplacian), a night/IR flag (almost no colour) and a change score against the camera's
previous sample; they feed drift and health views.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import cv2
import numpy as np

from bearwatch.images import MAX_SIDE, MIN_SIDE  # one definition for ingest and inference

NIGHT_CHROMA_MAX = 6.0  # mean |channel - grey| below this: an IR-like grey frame
BLACK_MAX_MEAN = 12.0  # grey mean below this with almost no texture: all black
FLAT_MAX_STD = 3.0  # grey standard deviation below this: no picture (black or uniform grey)
# Frozen: compared on every 4th pixel, not on an averaged thumbnail, so that sensor noise
# (which a live static scene always has) keeps a live picture from looking frozen, while a
# camera that repeats one image (same JPEG, or an encoder repeating a frame) gives ~0.
FROZEN_MAX_DIFF = 0.25  # mean |pixel difference| (0..255) below this: the same picture
FROZEN_STEP = 4
FROZEN_AFTER = 2  # this many identical samples in a row are accepted; the next is frozen
THUMB = (64, 48)


class Rejection(str, enum.Enum):
    EMPTY = "empty"
    BLACK = "black"
    GREY = "grey"
    FROZEN = "frozen"
    WRONG_SIZE = "wrong_size"


@dataclass(frozen=True)
class FrameStats:
    width: int
    height: int
    brightness: float  # mean grey level, 0..255
    contrast: float  # grey level standard deviation
    sharpness: float  # variance of the Laplacian
    is_night: bool
    change_score: float | None  # mean |difference| to the previous sample, 0..1


@dataclass(frozen=True)
class Check:
    rejection: Rejection | None
    reason: str
    thumb: np.ndarray | None  # small grey picture (area average), for the change score
    fingerprint: np.ndarray | None  # every 4th grey pixel, for the frozen check


def thumbnail(grey: np.ndarray) -> np.ndarray:
    return cv2.resize(grey, THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)


def fingerprint(grey: np.ndarray) -> np.ndarray:
    return grey[::FROZEN_STEP, ::FROZEN_STEP].astype(np.int16)


def check_frame(bgr: np.ndarray | None, previous: np.ndarray | None, repeats: int) -> Check:
    """Decide whether a frame is kept. ``previous`` is the last sample's fingerprint and
    ``repeats`` how many samples in a row were already identical to it."""
    if bgr is None or bgr.size == 0 or bgr.ndim != 3 or bgr.shape[2] != 3:
        return Check(Rejection.EMPTY, "empty frame", None, None)
    h, w = bgr.shape[:2]
    if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
        return Check(Rejection.WRONG_SIZE, f"frame {w}x{h} outside {MIN_SIDE}..{MAX_SIDE} pixels a side", None, None)
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    mean, std = cv2.meanStdDev(grey)
    if float(std[0][0]) < FLAT_MAX_STD:
        if float(mean[0][0]) < BLACK_MAX_MEAN:
            return Check(Rejection.BLACK, "all-black frame", None, None)
        return Check(Rejection.GREY, f"uniform frame (grey level {float(mean[0][0]):.0f})", None, None)
    thumb, fp = thumbnail(grey), fingerprint(grey)
    if is_repeat(fp, previous) and repeats + 1 >= FROZEN_AFTER:
        return Check(Rejection.FROZEN, f"frozen picture ({repeats + 1} samples identical to an earlier one)", thumb, fp)
    return Check(None, "", thumb, fp)


def is_repeat(fp: np.ndarray | None, previous: np.ndarray | None) -> bool:
    return (
        fp is not None and previous is not None and previous.shape == fp.shape
        and float(np.abs(fp - previous).mean()) < FROZEN_MAX_DIFF
    )


def frame_stats(bgr: np.ndarray, previous: np.ndarray | None = None) -> FrameStats:
    # OpenCV's reductions instead of numpy's temporaries: the same values (to float
    # rounding), 2 instead of 6 CPU-ms for a 720p frame. chroma: the mean of
    # |channel - grey| (absdiff on uint8 is exact); the Laplacian of uint8 pixels is
    # integer-valued, exact in float32; its variance is the squared standard deviation.
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    chroma = sum(cv2.mean(cv2.absdiff(bgr, cv2.merge((grey, grey, grey))))[:3]) / 3
    mean, std = cv2.meanStdDev(grey)
    _, laplacian_std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_32F))
    change = None
    if previous is not None:
        thumb = thumbnail(grey)
        if thumb.shape == previous.shape:
            change = float(np.abs(thumb - previous).mean() / 255.0)
    return FrameStats(
        width=int(bgr.shape[1]),
        height=int(bgr.shape[0]),
        brightness=float(mean[0][0]),
        contrast=float(std[0][0]),
        sharpness=float(laplacian_std[0][0]) ** 2,
        is_night=chroma < NIGHT_CHROMA_MAX,
        change_score=change,
    )
