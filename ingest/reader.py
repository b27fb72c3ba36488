"""The persistent latest-frame reader: keeps one stream open and hands over fresh frames.

A thread keeps the stream open and grabs every frame as it arrives (so nothing piles up
in a decoder buffer); when a sample is wanted, the next grabbed frame is decoded to BGR
and handed over. Fresh (one frame period at most) and no reconnect per sample, but it
decodes every frame of the stream all the time. bench/ingest.py measures both; see
docs/architecture.md ("Ingest") for the numbers and the choice.

Ingest switches a camera to it by itself when the camera's open-grab-release takes
about as long as its interval (ingest.sampler); it then runs in a capture process of
the camera's own (ingest.capture_child, ingest.capture_pool.ReaderProcess), never in
the ingest process. Memory is bounded: at most one decoded frame is held, while it is handed over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from bearwatch.errors import FrameError


class LatestFrameReader:
    def __init__(self, open_capture: Callable[[], cv2.VideoCapture], *, pace_fps: float | None = None) -> None:
        """``pace_fps``: for a video file standing in for a camera, grab at this rate
        (a live stream paces itself)."""
        self._open = open_capture
        self._pace = pace_fps
        self._stop = threading.Event()
        self._want = threading.Event()
        self._ready = threading.Event()
        self._frame: np.ndarray | None = None
        self._grabbed = 0
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="latest-frame-reader", daemon=True)

    def start(self) -> LatestFrameReader:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            cap = self._open()
        except cv2.error as exc:
            self.error = f"cannot open the source ({exc})"
            self._ready.set()  # a waiting latest() learns it now, not at its timeout
            return
        if not cap.isOpened():
            self.error = "cannot open the source"
            self._ready.set()
            cap.release()
            return
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                if not cap.grab():
                    if self._pace:  # a file: loop it
                        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                        continue
                    # A live stream that stops sending runs into the read deadline here.
                    self.error = "the stream stopped (no frame within the read deadline, or it ended)"
                    return
                self._grabbed += 1
                if self._want.is_set():
                    ok, frame = cap.retrieve()
                    self._frame = frame if ok else None
                    self._want.clear()
                    self._ready.set()
                if self._pace:
                    next_at += 1.0 / self._pace
                    time.sleep(max(0.0, next_at - time.monotonic()))
        except cv2.error as exc:
            self.error = f"the stream failed ({exc})"
        finally:
            cap.release()
            self._ready.set()  # wake a waiting latest(): it raises self.error

    @property
    def grabbed(self) -> int:
        return self._grabbed

    @property
    def alive(self) -> bool:
        """Still reading (False once the stream stopped, failed or was closed)."""
        return self._thread.is_alive()

    def latest(self, timeout_s: float) -> np.ndarray:
        """The next frame the stream delivers, decoded. FrameError when the stream has
        stopped or gives none within ``timeout_s``."""
        if self.error is not None:
            raise FrameError(self.error)
        self._frame = None  # never hand over the previous frame again
        self._ready.clear()
        self._want.set()
        if not self._ready.wait(timeout_s) or self._frame is None:
            raise FrameError(self.error or f"no frame within {timeout_s:g}s")
        frame, self._frame = self._frame, None
        return frame

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
