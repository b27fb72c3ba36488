"""Taking one frame with OpenCV: an FFmpeg source (RTSP, video files) or a local device.

Shared by the in-process sources (ingest.sources) and the capture child processes
(ingest.capture_child). Imports no SQLAlchemy: capture children start with it.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from bearwatch.errors import FrameError
from bearwatch.redact import redact_url


def open_ffmpeg(url: str, timeout_s: float) -> cv2.VideoCapture:
    """An FFmpeg capture with open and read deadlines; RTSP over TCP (no UDP loss)."""
    # Read by OpenCV's FFmpeg backend at each open; TCP interleaving survives NAT and loss.
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own log lines can echo URLs
    ms = max(1, int(timeout_s * 1000))
    return cv2.VideoCapture(
        url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    )


def open_device(index: int) -> cv2.VideoCapture:
    """A local camera (``/dev/video<index>``) through Video4Linux."""
    return cv2.VideoCapture(index, cv2.CAP_V4L2)


def grab_frame(cap: cv2.VideoCapture, source: str) -> np.ndarray | None:
    """One frame from an opened capture, which is released either way; FrameError (the
    source redacted) when it did not open or gave no frame."""
    try:
        if not cap.isOpened():
            raise FrameError(f"cannot open {redact_url(source)} (nothing answering, or not a video stream)")
        ok, frame = cap.read()
        if not ok:
            raise FrameError(f"no frame from {redact_url(source)} (stream ended or read timed out)")
        return frame
    finally:
        cap.release()
