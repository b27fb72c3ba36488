"""Ingest capacity: cameras per core at 1 frame / 5 s, and the CPU cost of each sampling strategy.

    .venv/bin/python bench/ingest.py [--seconds S] [--live-cameras N]

Sources: 720p (1280x720, 25 fps, a keyframe every second) H.264 footage made with
ffmpeg, served (a) over RTSP/TCP by a real gst-rtsp-server on loopback (the system
python3, tests/ingest/rtsp_server.py) and (b) from an .mp4 file.

For each source and strategy it measures, in this process:
  open-grab-release  CPU seconds and wall seconds per sample (open, first frame, release)
  persistent reader  CPU seconds per second of stream (every frame decoded as it comes),
                     so per 5 s slot; and how old the handed-over frame is
Cameras per core = 5 s / CPU seconds per camera per 5 s slot. This is EXTRAPOLATED from
measured CPU seconds (not a run with that many cameras); the RTSP server's own CPU is
not counted. A live check then runs the real ingest service (open-grab-release, capture
processes) on N RTSP cameras at a 1 s interval (the load of 5N cameras at 5 s) and
reports the missed-slot share it measured.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bearwatch.db import make_engine, session_factory
from bearwatch.migrations import upgrade_to_head
from bearwatch.schema import Frame, utcnow
from ingest.cameras import add_camera
from ingest.opencv_capture import open_ffmpeg
from ingest.reader import LatestFrameReader
from ingest.sampler import SamplerOptions
from ingest.scheduler import IngestOptions, IngestService
from ingest.sources import SourceState, capture
from ingest.store import FrameStore
from shadow.sites import add_site

ROOT = Path(__file__).resolve().parent.parent
SLOT_S = 5.0


def cpu() -> float:
    self_ = resource.getrusage(resource.RUSAGE_SELF)
    return self_.ru_utime + self_.ru_stime


def make_footage(directory: Path) -> tuple[Path, Path]:
    clip = directory / "720p.mp4"
    common = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "25", "-bf", "0"]
    src = ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-t", "40"]
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *src, *common, str(clip)], check=True)
    segments = directory / "segments"
    segments.mkdir()
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(clip), "-c", "copy", "-f", "segment",
                    "-segment_time", "1", "-reset_timestamps", "1", str(segments / "seg_%03d.mp4")], check=True)
    return clip, segments


def start_rtsp(segments: Path, clip: Path, port: int, mounts: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["/usr/bin/python3", str(ROOT / "tests/ingest/rtsp_server.py"), str(port), str(segments),
         ",".join(f"cam{i}" for i in range(mounts)), f"--full={clip}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", "RTSP server did not start"
    return proc


def bench_grab(source: str, samples: int) -> tuple[float, float]:
    """CPU and wall seconds per open-grab-release sample."""
    capture(source, SourceState(), timeout_s=10, now=utcnow())  # warm-up
    c0, w0 = cpu(), time.perf_counter()
    for _ in range(samples):
        got = capture(source, SourceState(), timeout_s=10, now=utcnow())
        assert got.image is not None and got.image.shape == (720, 1280, 3)
    return (cpu() - c0) / samples, (time.perf_counter() - w0) / samples


def bench_reader(open_fn: object, seconds: float, pace: float | None) -> tuple[float, float]:
    """CPU seconds per second of stream, and mean latency of a handed-over frame."""
    reader = LatestFrameReader(open_fn, pace_fps=pace).start()  # type: ignore[arg-type]
    reader.latest(10)  # connected and decoding
    c0, w0, waits = cpu(), time.perf_counter(), []
    while time.perf_counter() - w0 < seconds:
        t = time.perf_counter()
        reader.latest(5)
        waits.append(time.perf_counter() - t)
        time.sleep(0.5)
    used, wall = cpu() - c0, time.perf_counter() - w0
    reader.close()
    return used / wall, sum(waits) / len(waits)


def outcomes() -> dict[str, float]:
    from prometheus_client import REGISTRY

    totals: dict[str, float] = {}
    for metric in REGISTRY.collect():
        if metric.name == "bearwatch_ingest_slots":
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    key = sample.labels["outcome"]
                    totals[key] = totals.get(key, 0) + sample.value
    return totals


def live_check(rtsp: str, cameras: int, window_s: float, workdir: Path, processes: int) -> tuple[int, int]:
    """Run the real service on ``cameras`` RTSP cameras at 1 frame / 5 s; for each camera,
    count stored frames over ``window_s`` from its first frame: (slots, stored)."""
    url = f"sqlite:///{workdir / 'bench.db'}"
    engine = make_engine(url)
    upgrade_to_head(engine)
    factory = session_factory(engine)
    with factory.begin() as session:
        site = add_site(session, "bench", actor="bench")
        for i in range(cameras):
            add_camera(session, site, f"c{i}", f"{rtsp}/cam{i}", interval_s=SLOT_S)
    options = IngestOptions(lease_s=30, capture_processes=processes, sampler=SamplerOptions(capture_timeout_s=5))
    service = IngestService(factory, FrameStore(workdir / "frames"), options).start()
    time.sleep(window_s + SLOT_S + 2)
    service.stop()
    slots = stored = 0
    with factory() as session:
        for camera_id in session.scalars(sa.select(Frame.camera_id).distinct()):
            times = [t.timestamp() for t in session.scalars(
                sa.select(Frame.captured_at).where(Frame.camera_id == camera_id).order_by(Frame.captured_at))]
            start = times[0] - SLOT_S / 2
            stored += sum(start <= t < start + window_s for t in times)
        slots = cameras * int(window_s / SLOT_S)
    engine.dispose()
    return slots, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each persistent-reader measurement")
    parser.add_argument("--samples", type=int, default=10, help="open-grab-release samples per source")
    parser.add_argument("--live-cameras", type=int, default=10)
    parser.add_argument("--live-seconds", type=float, default=30.0, help="a multiple of 5")
    parser.add_argument("--capture-processes", type=int, default=8, help="for the live check")
    parser.add_argument("--live-only", action="store_true", help="skip the per-strategy measurements")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("needs ffmpeg (scripts/install-system-deps.sh)")
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        clip, segments = make_footage(workdir)
        port = 18000 + os.getpid() % 1000
        server = start_rtsp(segments, clip, port, max(1, args.live_cameras))
        rtsp = f"rtsp://127.0.0.1:{port}"
        try:
            rows = []
            if args.live_only:
                expected, stored = live_check(rtsp, args.live_cameras, args.live_seconds, workdir, args.capture_processes)
                print(f"live check: {stored}/{expected} stored; outcomes {outcomes()}")
                return
            cpu_s, wall_s = bench_grab(f"{rtsp}/cam0", args.samples)
            rows.append(("RTSP 720p", "open-grab-release", cpu_s, f"{wall_s:.2f} s to open and get a frame"))
            per_s, wait = bench_reader(lambda: open_ffmpeg(f"{rtsp}/full", 10), args.seconds, None)
            rows.append(("RTSP 720p", "persistent reader", per_s * SLOT_S, f"next frame in {wait * 1000:.0f} ms"))
            cpu_s, wall_s = bench_grab(str(clip), args.samples)
            rows.append(("file 720p", "open-grab-release", cpu_s, f"{wall_s:.2f} s to open, seek and read"))
            per_s, wait = bench_reader(lambda: open_ffmpeg(str(clip), 10), args.seconds, 25.0)
            rows.append(("file 720p", "persistent reader", per_s * SLOT_S, f"next frame in {wait * 1000:.0f} ms"))
            expected, stored = live_check(rtsp, args.live_cameras, args.live_seconds, workdir, args.capture_processes)
        finally:
            server.kill()
            server.wait()
    print(f"ingest bench on {os.cpu_count()} cores (CPU seconds of this process; RTSP server not counted)")
    print("| source | strategy | CPU s per camera per 5 s slot | cameras per core at 1 frame / 5 s (extrapolated) | freshness |")
    print("|---|---|---|---|---|")
    for source, strategy, per_slot, fresh in rows:
        print(f"| {source} | {strategy} | {per_slot:.3f} | {SLOT_S / per_slot:.0f} | {fresh} |")
    missed = max(0, expected - stored) / expected
    print(f"\nlive check (real ingest service, capture processes, SQLite): {args.live_cameras} RTSP 720p cameras "
          f"at 1 frame / 5 s for {args.live_seconds:g} s: {stored}/{expected} slots stored, {100 * missed:.1f}% missed "
          f"({args.capture_processes} capture processes; sample outcomes {outcomes()})")


if __name__ == "__main__":
    main()
