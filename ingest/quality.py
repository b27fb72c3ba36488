"""Image statistics stored with every kept frame (they feed drift and health views)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

NIGHT_CHROMA_MAX = 6.0  # mean |channel - grey| below this: an IR-like grey frame


@dataclass(frozen=True)
class FrameStats:
    width: int
    height: int
    brightness: float  # mean grey level, 0..255
    contrast: float  # grey level standard deviation
    sharpness: float  # variance of the Laplacian
    is_night: bool


def frame_stats(bgr: np.ndarray) -> FrameStats:
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    chroma = float(np.abs(bgr.astype(np.int16) - grey[..., None].astype(np.int16)).mean())
    return FrameStats(
        width=int(bgr.shape[1]),
        height=int(bgr.shape[0]),
        brightness=float(grey.mean()),
        contrast=float(grey.std()),
        sharpness=float(cv2.Laplacian(grey, cv2.CV_64F).var()),
        is_night=chroma < NIGHT_CHROMA_MAX,
    )
