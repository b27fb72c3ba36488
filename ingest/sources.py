"""Opening camera sources with OpenCV and taking one fresh frame.

This first version opens, grabs and releases per sample. Video files stand in for
live cameras: the frame taken is the one at the current wall-clock position of the
looping clip, as a camera pointed at that scene would show now.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import cv2
import numpy as np

from bearwatch.errors import FrameError
from bearwatch.redact import redact_url

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
OPEN_TIMEOUT_MS = 5000
READ_TIMEOUT_MS = 5000


def resolve_source(source: str) -> str:
    """Fill ``${VAR}`` placeholders (credentials) from the environment, at capture time."""

    def fill(match: re.Match[str]) -> str:
        value = os.environ.get(match.group(1))
        if value is None:
            raise FrameError(f"source {redact_url(source)} needs environment variable {match.group(1)}, which is not set")
        return value

    return _PLACEHOLDER.sub(fill, source)


def _is_file(source: str) -> bool:
    return source.startswith("file://") or "://" not in source


def _file_path(source: str) -> Path:
    return Path(source.removeprefix("file://"))


def read_frame(source: str) -> np.ndarray:
    """Take one frame now from ``source`` (a URL or a video file path); BGR uint8."""
    url = resolve_source(source)
    if _is_file(url):
        path = _file_path(url)
        if not path.is_file():
            raise FrameError(f"video file {path} does not exist")
        cap = cv2.VideoCapture(str(path))
    else:
        cap = cv2.VideoCapture(
            url, cv2.CAP_FFMPEG,
            [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS],
        )
    try:
        if not cap.isOpened():
            raise FrameError(f"cannot open {redact_url(source)}")
        if _is_file(url):
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            fps = cap.get(cv2.CAP_PROP_FPS) or 5.0
            if count > 0:
                cap.set(cv2.CAP_PROP_POS_FRAMES, int(time.time() * fps) % count)
        ok, frame = cap.read()
        if not ok or frame is None or frame.size == 0:
            raise FrameError(f"no frame from {redact_url(source)}")
        return frame
    finally:
        cap.release()
