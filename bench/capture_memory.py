"""Memory of the capture processes (ingest.capture_pool), counted the honest way.

    .venv/bin/python bench/capture_memory.py [--processes 20] [--source FILE]

Starts a pool of N capture processes, has each take three 720p H.264 frames through
OpenCV's FFmpeg backend (from --source, default a clip made here with ffmpeg), then
reads /proc/PID/smaps_rollup of every child. Resident size (RSS) counts the shared
library pages (OpenCV, FFmpeg, numpy) once per process, so summing it overstates what
N processes cost; proportional size (PSS) splits shared pages between their users, and
private dirty pages are what one more process really adds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.capture_pool import CapturePool

FIELDS = ("Rss", "Pss", "Private_Dirty")


def memory_mb(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in FIELDS:
            out[name] = int(rest.split()[0]) / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=20)
    parser.add_argument("--source", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source
        if source is None:
            source = Path(tmp) / "720p.mp4"
            subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=10",
                            "-t", "5", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(source)], check=True)
        pool = CapturePool(size=args.processes)

        def three_frames() -> None:
            for _ in range(3):
                assert pool.capture("rtsp", str(source), 10, 15) is not None  # the FFmpeg path, as for RTSP

        threads = [threading.Thread(target=three_frames) for _ in range(args.processes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        children = [memory_mb(c.proc.pid) for c in list(pool._idle.queue)]
        total = {f: sum(c[f] for c in children) for f in FIELDS}
        print(f"{len(children)} capture processes after 720p captures (MB):")
        print("| per process RSS | per process PSS | per process private dirty | sum RSS | sum PSS |")
        print("|---:|---:|---:|---:|---:|")
        print(f"| {children[0]['Rss']:.0f} | {children[0]['Pss']:.0f} | {children[0]['Private_Dirty']:.0f} "
              f"| {total['Rss']:.0f} | {total['Pss']:.0f} |")
        print(f"this (parent) process: PSS {memory_mb(os.getpid())['Pss']:.0f} MB")
        for c in list(pool._idle.queue):
            c.kill()


if __name__ == "__main__":
    main()
