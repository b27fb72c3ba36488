"""A capture process: takes one frame per request with OpenCV's FFmpeg backend.

Run by ingest.capture_pool as ``python -m ingest.capture_child``. Requests and replies
are length-prefixed pickles on stdin/stdout (between this package's own processes
only). A request ``(kind, url, timeout_s)`` opens the source, grabs one frame and
releases it (open-grab-release). A request ``("stream", kind, url, timeout_s)`` keeps a
persistent reader (ingest.reader) open on that source between requests and answers with
the next frame it delivers; such a process serves one camera only
(ingest.capture_pool.ReaderProcess), and it ends when its stream fails (the parent starts
a fresh one at the next sample). Kept in a child process because OpenCV holds one process-wide lock while an
FFmpeg source opens: in-process, one stalled camera would delay every other open.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
from typing import Any, BinaryIO

from bearwatch.errors import FrameError

HEADER = struct.Struct("!Q")


def write_message(out: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(HEADER.pack(len(data)) + data)
    out.flush()


def read_message(inp: BinaryIO) -> Any:
    header = inp.read(HEADER.size)
    if len(header) < HEADER.size:
        raise EOFError("capture pipe closed")
    (size,) = HEADER.unpack(header)
    return pickle.loads(inp.read(size))


def main() -> None:
    # OpenCV is loaded here, not at the top: after __main__ below has set OPENCV_LOG_LEVEL,
    # which OpenCV reads when it loads (and ingest.capture_pool imports this module for
    # the message framing only).
    from bearwatch.redact import redact_url
    from ingest.opencv_capture import grab_frame, open_device, open_ffmpeg
    from ingest.reader import LatestFrameReader

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write on the reply pipe
    reader: LatestFrameReader | None = None
    while True:
        try:
            request = read_message(inp)
        except EOFError:
            if reader is not None:
                reader.close()
            return
        try:
            if request[0] == "stream":
                _, kind, url, timeout_s = request
                if reader is None:
                    def opener(kind: str = kind, url: str = url, timeout_s: float = timeout_s) -> Any:
                        return open_device(int(url)) if kind == "device" else open_ffmpeg(url, timeout_s)

                    reader = LatestFrameReader(opener).start()
                try:
                    frame = reader.latest(timeout_s)
                except FrameError as exc:
                    # The process ends with its stream (a reader thread stuck inside FFmpeg
                    # cannot be stopped); the parent starts a fresh one for the next sample.
                    write_message(out, (False, f"{redact_url(url)}: persistent reader: {exc}"))
                    os._exit(0)
                write_message(out, (True, frame))
                continue
            kind, url, timeout_s = request
            cap = open_device(int(url)) if kind == "device" else open_ffmpeg(url, timeout_s)
            write_message(out, (True, grab_frame(cap, f"device://{url}" if kind == "device" else url)))
        except FrameError as exc:
            write_message(out, (False, str(exc)))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which redacts it
            write_message(out, (False, f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    main()
