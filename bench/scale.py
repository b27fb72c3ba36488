"""Load benchmark: N simulated cameras through the whole system on PostgreSQL.

    .venv/bin/python bench/scale.py [--cameras 200] [--interval 5] [--duration 180] [--warmup 45]

The cameras are the demo footage (bears cross every minute), served three ways: over
RTSP by one real gst-rtsp-server on loopback (tests/ingest/rtsp_server.py, one mount
per camera, H.264 segments made with ffmpeg), as HTTP snapshots by a small server in
this process (the current demo frame as a JPEG), and as looping video files. Two
`bearwatch ingest`, two `bearwatch infer --device cpu` and one `bearwatch shadow`
run on a fresh database on the PostgreSQL server (dropped afterwards). The site is in
the expanded stage with the demo model as its rollout model, so its flags become alerts
at once (a log channel delivers them).

After the warm-up (processes starting, the model loading) the measuring window of
--duration seconds starts; printed afterwards:
  slots            cameras x window / interval, the frames stored in the window, and
                   missed slots (%); the ingest workers' outcome counters for the run
  scoring          frames scored per second in the window (and frames still waiting)
  latency          capture -> alert created, and capture -> alert delivered (p50, p95)
  database size    growth of pg_database_size over the run per camera-day sampled, with
                   and without the stored embeddings; frame files on disk per camera-day
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2
import numpy as np
import sqlalchemy as sa
import yaml

from bearwatch.db import make_engine, session_factory
from bearwatch.demo.footage import DEMO_CAMERAS, ensure_demo_footage, render_frame
from bearwatch.demo.model import ensure_demo_model
from bearwatch.migrations import upgrade_to_head
from bearwatch.schema import Alert, Frame, FrameQueueEntry, Prediction, Site, Stage, utcnow
from bench.scratch_db import scratch_database
from shadow.rollout import record_stage_change

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT_SECONDS = 60  # the HTTP cameras loop over a minute of demo frames


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assets_dir(work: Path, name: str) -> Path:
    keep = os.environ.get("BEARWATCH_TEST_ASSETS")
    return Path(keep) / name if keep else work / name


def rtsp_segments(clip: Path, folder: Path) -> Path:
    """30 one-second H.264 segments of a demo clip (the server plays the current second's)."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(clip), "-t", "30", "-c:v", "libx264", "-preset", "veryfast",
         "-pix_fmt", "yuv420p", "-g", "5", "-f", "segment", "-segment_time", "1", "-reset_timestamps", "1",
         str(folder / "seg_%03d.mp4")],
        check=True,
    )
    return folder


def start_rtsp(segments: Path, port: int, mounts: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["/usr/bin/python3", str(ROOT / "tests/ingest/rtsp_server.py"), str(port), str(segments), ",".join(mounts)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", "RTSP server did not start"
    return proc


def start_snapshots(port: int) -> ThreadingHTTPServer:
    """Every /cam/N answers the demo frame of the current second as a JPEG."""
    spec = DEMO_CAMERAS[0]
    jpegs = [cv2.imencode(".jpg", render_frame(spec, float(t)))[1].tobytes() for t in range(SNAPSHOT_SECONDS)]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = jpegs[int(time.time()) % SNAPSHOT_SECONDS]
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def camera_sources(n: int, rtsp_share: float, http_share: float, rtsp_port: int, http_port: int,
                   clips: list[Path]) -> tuple[list[dict[str, object]], list[str]]:
    n_rtsp, n_http = round(n * rtsp_share), round(n * http_share)
    cameras, mounts = [], []
    for i in range(n):
        if i < n_rtsp:
            mounts.append(f"cam{i}")
            source = f"rtsp://127.0.0.1:{rtsp_port}/cam{i}"
        elif i < n_rtsp + n_http:
            source = f"http://127.0.0.1:{http_port}/cam/{i}"
        else:
            source = str(clips[i % len(clips)])
        cameras.append({"name": f"cam{i:03d}", "source": source})
    return cameras, mounts


def ingest_outcomes(ports: list[int]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for port in ports:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("bearwatch_ingest_slots_total{"):
                outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
                totals[outcome] = totals.get(outcome, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def percentiles(values: list[float]) -> str:
    if not values:
        return "n/a (none)"
    p50, p95 = np.percentile(values, [50, 95])
    return f"p50 {p50:.1f} s, p95 {p95:.1f} s (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=200)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples per camera")
    parser.add_argument("--duration", type=float, default=180.0, help="measuring window, seconds")
    parser.add_argument("--warmup", type=float, default=45.0, help="seconds before the window starts")
    parser.add_argument("--rtsp-share", type=float, default=0.2)
    parser.add_argument("--http-share", type=float, default=0.3)
    parser.add_argument("--pg-admin-url", default=os.environ.get(
        "BEARWATCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bearwatch-scale-"))
    procs: list[subprocess.Popen[bytes]] = []
    rtsp: subprocess.Popen[str] | None = None
    snapshots: ThreadingHTTPServer | None = None
    with scratch_database(args.pg_admin_url, "bearwatch_scale") as database:
        db_url = database.url
        try:
            clips = list(ensure_demo_footage(assets_dir(work, "footage")).values())
            model = ensure_demo_model(assets_dir(work, "demo-model"))
            rtsp_port, http_port = free_port(), free_port()
            cameras, mounts = camera_sources(args.cameras, args.rtsp_share, args.http_share, rtsp_port, http_port, clips)
            if mounts:
                rtsp = start_rtsp(rtsp_segments(clips[0], work / "rtsp"), rtsp_port, mounts)
            snapshots = start_snapshots(http_port)
            for camera in cameras:
                camera["interval"] = args.interval
            park = {
                "sites": [{"name": "scale", "thresholds": {"alert_cooldown_s": 0}, "cameras": cameras}],
                "models": [{"name": "demo-bear", "path": str(model), "positive": ["bear"], "threshold": 0.5,
                            "sites": ["scale"]}],
                "alerts": {"channels": [{"name": "log", "kind": "log"}]},
            }
            park_file = work / "park.yaml"
            park_file.write_text(yaml.safe_dump(park), encoding="utf-8")
            env = {**os.environ, "BEARWATCH_DATABASE_URL": db_url, "BEARWATCH_DATA_DIR": str(work / "data"),
                   "PYTHONPATH": str(ROOT)}
            engine = make_engine(db_url)
            upgrade_to_head(engine)
            factory = session_factory(engine)
            subprocess.run([sys.executable, "-m", "bearwatch", "config", "apply", str(park_file)], env=env, check=True,
                           capture_output=True)
            with factory.begin() as session:
                site = session.scalars(sa.select(Site).where(Site.name == "scale").with_for_update()).one()
                now = utcnow()
                record_stage_change(session, site, Stage.LIMITED, actor="bench", reason="scale bench", now=now,
                                    trial=(now, now + timedelta(days=1)))
                record_stage_change(session, site, Stage.EXPANDED, actor="bench", reason="scale bench", now=now)
            with engine.connect() as conn:
                base_size = int(conn.scalar(sa.text("SELECT pg_database_size(current_database())")) or 0)

            metrics_ports = [free_port(), free_port()]
            logs = work / "logs"
            logs.mkdir()
            bearwatch = [sys.executable, "-m", "bearwatch"]
            commands = [
                ("ingest-1", [*bearwatch, "ingest", "--metrics-port", str(metrics_ports[0])]),
                ("ingest-2", [*bearwatch, "ingest", "--metrics-port", str(metrics_ports[1])]),
                ("infer-1", [*bearwatch, "infer", "--device", "cpu", "--batch-size", "32", "--decode-threads", "1"]),
                ("infer-2", [*bearwatch, "infer", "--device", "cpu", "--batch-size", "32", "--decode-threads", "1"]),
                ("shadow", [*bearwatch, "shadow", "--interval", "1"]),
            ]
            for name, argv in commands:
                procs.append(subprocess.Popen(argv, env=env, stdout=(logs / f"{name}.log").open("wb"),
                                              stderr=subprocess.STDOUT))
            print(f"{args.cameras} cameras ({len(mounts)} RTSP, {round(args.cameras * args.http_share)} HTTP, "
                  f"the rest files) every {args.interval:g} s; warm-up {args.warmup:g} s, window {args.duration:g} s",
                  flush=True)
            time.sleep(args.warmup)
            start = utcnow()
            time.sleep(args.duration)
            end = utcnow()
            outcomes = ingest_outcomes(metrics_ports)
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()

            window_s = (end - start).total_seconds()
            in_window = sa.and_(Frame.captured_at >= start, Frame.captured_at < end)
            with factory() as session:
                stored = session.scalar(sa.select(sa.func.count()).where(in_window)) or 0
                scored = session.scalar(
                    sa.select(sa.func.count(sa.distinct(Prediction.frame_id)))
                    .where(Prediction.scored_at >= start, Prediction.scored_at < end)
                ) or 0
                waiting = session.scalar(
                    sa.select(sa.func.count()).select_from(FrameQueueEntry)
                    .join(Frame, Frame.id == FrameQueueEntry.frame_id).where(in_window)
                ) or 0
                latencies = session.execute(
                    sa.select(Frame.captured_at, Alert.created_at, Alert.delivered_at)
                    .join(Alert, Alert.frame_id == Frame.id).where(in_window)
                ).all()
                first, last = session.execute(sa.select(sa.func.min(Frame.captured_at), sa.func.max(Frame.captured_at))).one()
                embedding_bytes = session.scalar(sa.select(sa.func.sum(sa.func.pg_column_size(Prediction.embedding)))) or 0
                db_size = int(session.scalar(sa.text("SELECT pg_database_size(current_database())")) or 0)
            engine.dispose()
            expected = args.cameras * window_s / args.interval
            sampled_days = args.cameras * ((last - first).total_seconds() if first and last else 0) / 86400
            files = sum(p.stat().st_size for p in (work / "data" / "frames").rglob("*.jpg"))
            to_alert = [(a - c).total_seconds() for c, a, _ in latencies]
            to_delivery = [(d - c).total_seconds() for c, _, d in latencies if d is not None]
            grown = db_size - base_size
            print(f"sampled slots: {stored} of {expected:.0f} in the window; missed slots: "
                  f"{100 * max(0.0, 1 - stored / expected):.1f}%")
            print("ingest outcomes over the run: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(outcomes.items())))
            print(f"frames scored per second: {scored / window_s:.2f} (needed {args.cameras / args.interval:.2f}); "
                  f"frames of the window still waiting at its end: {waiting}")
            print(f"capture -> alert created: {percentiles(to_alert)}")
            print(f"capture -> alert delivered: {percentiles(to_delivery)}")
            if sampled_days > 0:
                print(f"database per camera-day: {grown / sampled_days / 1e6:.1f} MB with embeddings, "
                      f"{(grown - embedding_bytes) / sampled_days / 1e6:.1f} MB without "
                      f"(grew {grown / 1e6:.1f} MB over {sampled_days * 24:.2f} camera-hours)")
                print(f"frame files per camera-day: {files / sampled_days / 1e9:.2f} GB")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            if rtsp is not None:
                rtsp.kill()
                rtsp.wait()
            if snapshots is not None:
                snapshots.shutdown()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
