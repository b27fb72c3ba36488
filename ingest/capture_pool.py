"""A pool of capture processes with a hard watchdog.

Each capture goes to an idle child process (ingest.capture_child); the parent waits
for the reply up to the deadline. A child that outlives it is killed (SIGKILL) and
replaced, so a capture stuck inside FFmpeg never holds anything for long. The pool
starts children lazily, up to ``size``.

:class:`ReaderProcess` is one camera's persistent reader (ingest.reader) in a child
process of its own, for a camera whose open-grab-release takes about its interval
(ingest.sampler switches it): the same deadlines, the child killed when a frame does not
come in time, when the stream fails, and when the camera is released.
"""

from __future__ import annotations

import math
import os
import queue
import select
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

from bearwatch.errors import FrameError
from ingest.capture_child import read_message, write_message


class _Child:
    def __init__(self) -> None:
        env = {**os.environ, "OPENCV_LOG_LEVEL": "ERROR", "OPENCV_FFMPEG_LOGLEVEL": "-8"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest.capture_child"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        )

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()

    def ask(self, request: Any, deadline: float) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        write_message(self.proc.stdin, request)  # type: ignore[arg-type]
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError
        # The reply is written in one go once the capture is done; reading it is quick.
        return read_message(self.proc.stdout)  # type: ignore[arg-type]


# How long a capture waits for a free child before its slot is skipped as ``pool_busy``.
# Short: the capture's own deadline starts once it has a child, and a properly sized pool
# (auto_pool_size) rarely has none free.
ACQUIRE_WAIT_S = 0.5


class CapturePoolBusy(FrameError):
    """Every capture process is busy: the worker's shortage, not the camera's failure."""


def auto_pool_size(expected_busy: list[float], headroom: float = 1.5) -> int:
    """Children for cameras that each keep one busy ``expected_busy[i]`` of the time (their
    capture time over their interval, at most 1: a camera never has two captures in
    flight), with headroom for bursts; never more than one per camera, at least one."""
    if not expected_busy:
        return 1
    wanted = math.ceil(headroom * sum(min(1.0, max(0.0, b)) for b in expected_busy)) + 1
    return max(1, min(len(expected_busy), wanted))


class CapturePool:
    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._idle: queue.LifoQueue[_Child] = queue.LifoQueue()
        self._children: set[_Child] = set()  # idle and busy: close() kills them all
        self._closed = False
        self._lock = threading.Lock()
        self.killed = 0  # captures abandoned and their process killed

    def resize(self, size: int) -> None:
        """Start children up to ``size`` as needed; children past it end when they come back idle."""
        with self._lock:
            self.size = max(1, size)

    def _acquire(self) -> _Child:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._closed:
                raise FrameError("ingest is stopping")
            if len(self._children) < self.size:
                child = _Child()
                self._children.add(child)
                return child
        try:
            return self._idle.get(timeout=ACQUIRE_WAIT_S)
        except queue.Empty:
            raise CapturePoolBusy(f"all {self.size} capture processes are busy; slot skipped") from None

    def _discard(self, child: _Child) -> None:
        child.kill()
        with self._lock:
            self._children.discard(child)

    def capture(self, kind: str, url: str, timeout_s: float, deadline_s: float) -> np.ndarray | None:
        """One frame from an FFmpeg or device source; FrameError on failure. The child
        is killed if no reply comes within ``deadline_s``."""
        child = self._acquire()
        deadline = time.monotonic() + deadline_s  # the capture's own time, from when it has a child
        try:
            ok, payload = child.ask((kind, url, timeout_s), deadline)
        except TimeoutError:
            self._discard(child)
            self.killed += 1
            raise FrameError(f"capture did not finish within {deadline_s:g}s; its process was killed") from None
        except (EOFError, OSError, ValueError):
            self._discard(child)
            raise FrameError("the capture process died") from None
        self._give_back(child)
        if not ok:
            raise FrameError(str(payload))
        return payload

    def _give_back(self, child: _Child) -> None:
        with self._lock:
            keep = not self._closed and child in self._children and len(self._children) <= self.size
            if not keep:
                self._children.discard(child)
        if keep:
            self._idle.put(child)
        else:
            child.kill()

    def close(self) -> None:
        """Kill every child, busy ones too: a capture in flight ends now ("the capture
        process died") instead of at its deadline, so stopping ingest does not wait for it."""
        with self._lock:
            self._closed = True
            children, self._children = list(self._children), set()
        for child in children:
            child.kill()




class ReaderProcess:
    """One camera's persistent reader in a capture process of its own (not a pool child:
    it holds its stream open between samples). Started at the first capture; after a
    failure (no frame by the deadline, the stream stopped or could not be opened) the
    process is killed and the next capture starts a fresh one, which opens the stream
    again. ``close`` kills it for good: the camera was released or ingest is stopping."""

    def __init__(self) -> None:
        self._child: _Child | None = None
        self._closed = False
        self._lock = threading.Lock()
        self.starts = 0  # processes started (the first open and every reopen)

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._child.proc.pid if self._child is not None else None

    def capture(self, kind: str, url: str, timeout_s: float, deadline_s: float) -> np.ndarray | None:
        """The next frame of the stream; FrameError on failure (the process is then killed)."""
        with self._lock:
            if self._closed:
                raise FrameError("the persistent reader was closed (camera released or ingest stopping)")
            if self._child is None:
                self._child = _Child()
                self.starts += 1
            child = self._child
        deadline = time.monotonic() + deadline_s
        try:
            ok, payload = child.ask(("stream", kind, url, timeout_s), deadline)
        except TimeoutError:
            self._end(child)
            raise FrameError(f"the stream gave no frame within {deadline_s:g}s; its reader process was killed") from None
        except (EOFError, OSError, ValueError):
            self._end(child)
            raise FrameError("the persistent reader process died") from None
        if not ok:
            self._end(child)  # it ends by itself after a failed stream; reaped here
            raise FrameError(str(payload))
        return payload

    def _end(self, child: _Child) -> None:
        with self._lock:
            if self._child is child:
                self._child = None
        child.kill()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            child, self._child = self._child, None
        if child is not None:
            child.kill()
