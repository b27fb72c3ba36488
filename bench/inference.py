"""Inference throughput and the per-frame CPU budget: bearwatch's worker against fastai's
own paths, in one process.

    .venv/bin/python bench/inference.py [--frames N] [--predict-frames N] [--batch-size B]
        [--device auto|cpu|cuda] [--preprocess exact,fast] [--database-url URL]
        [--precision auto|fp32|fp16|bf16] [--compile] [--duration S [--rss-every S]]

Prints, as markdown tables ready for README:
- frames/s of (a) a `learn.predict` loop, (b) fastai's `test_dl` + `get_preds`, (c) the bare
  model forward on ready tensors (the ceiling), (d) bearwatch's worker end to end (JPEG on
  disk -> rows in the database) for each preprocessing path, and the ratios;
- per stage, CPU ms per frame from thread CPU time, measured in the thread doing the work
  (so the figures hold on a loaded machine): claim, read, decode, resize, forward, scoring
  rows, commit. Read/decode/resize are also timed alone on one thread, to split them.
With ``--duration S`` the worker then runs S more seconds on a queue kept full, and the
process's RSS is printed every ``--rss-every`` seconds (the first interval is the warm-up;
"flat" means the peak grows < 10% after it).

ResNet-18 at 224 px, random weights (speed does not depend on them; the threshold is set so
no frame is flagged, as ~99% are not in production, so no heat maps are made), 1280x720
JPEG frames (quality 90) from the demo footage. SQLite in a temporary folder unless
``--database-url`` names an empty database (its tables are created). Runs unchanged on CUDA.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import sqlalchemy as sa
import torch
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import inference.worker as worker_module
from bearwatch.db import make_engine, session_factory, write_transaction
from bearwatch.demo.footage import FootageSpec, render_frame
from bearwatch.images import check_image, read_image_file
from bearwatch.migrations import upgrade_to_head
from bearwatch.schema import Frame, FrameQueueEntry, utcnow
from inference.registry import register_model
from inference.runner import ModelRunner, RunnerOptions, pick_device
from inference.tensor_preprocess import decode_jpeg_cpu
from inference.worker import InferenceWorker, WorkerOptions, batch_size_for
from ingest.cameras import add_camera
from shadow.sites import add_site

UNIQUE_FRAMES = 48  # rendered; the rest are byte copies in files of their own (720p renders are slow)
NO_FLAGS = 0.999  # with random weights, no frame reaches it: no heat maps


def spec(width: int, height: int) -> FootageSpec:
    return FootageSpec("bench", seed=5, width=width, height=height)


def make_frames(directory: Path, n: int, width: int = 1280, height: int = 720) -> list[Path]:
    footage = spec(width, height)
    rendered = [
        cv2.imencode(".jpg", render_frame(footage, (i * 7.37) % footage.duration_s), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
        .tobytes()
        for i in range(min(n, UNIQUE_FRAMES))
    ]
    paths = []
    for i in range(n):
        path = directory / f"{i:06d}.jpg"
        path.write_bytes(rendered[i % len(rendered)])
        paths.append(path)
    return paths


def make_learner(directory: Path) -> Path:
    from fastai.vision.all import ImageDataLoaders, Normalize, Resize, imagenet_stats, resnet18, vision_learner

    folder = directory / "train"
    small = spec(640, 480)
    for label in ("bear", "empty"):
        (folder / label).mkdir(parents=True)
        for i in range(8):
            cv2.imwrite(str(folder / label / f"{i}.jpg"), render_frame(small, i * 3.0 + (60 if label == "empty" else 0)))
    dls = ImageDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, bs=4, num_workers=0, item_tfms=Resize(224),
                                       batch_tfms=Normalize.from_stats(*imagenet_stats))
    learn = vision_learner(dls, resnet18, pretrained=False)
    learn.export(directory / "resnet18-224.pkl")
    return directory / "resnet18-224.pkl"


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object]) -> float:
    synchronize()
    start = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - start


def thread_cpu_s(thread: threading.Thread) -> float:
    """CPU seconds another (live) thread has used: its own POSIX CPU clock."""
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# --- the database side --------------------------------------------------------------------


def open_database(url: str | None, work: Path) -> sessionmaker[Session]:
    engine = make_engine(url or f"sqlite:///{work / 'bench.db'}")
    upgrade_to_head(engine)
    return session_factory(engine)


def bench_camera(factory: sessionmaker[Session], model_path: Path) -> int:
    with factory.begin() as session:
        site = add_site(session, "bench", actor="bench")
        camera = add_camera(session, site, "cam", "bench.avi", interval_s=5)
        register_model(session, model_path, name="resnet18", positive=["bear"], threshold=NO_FLAGS)
        return camera.id


def queue_frames(factory: sessionmaker[Session], camera_id: int, paths: list[Path], width: int, height: int) -> None:
    """Pending frame rows for files already on disk (the database triggers queue them)."""
    with write_transaction(factory) as session:  # BEGIN IMMEDIATE on SQLite, beside the worker's writes
        base = utcnow()
        session.add_all(
            Frame(camera_id=camera_id, captured_at=base + timedelta(microseconds=i), path=p.name, sha256="0" * 64,
                  size_bytes=p.stat().st_size, width=width, height=height)
            for i, p in enumerate(paths)
        )


def queue_depth(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(FrameQueueEntry)) or 0


# --- per-stage CPU time inside the worker -------------------------------------------------


@dataclass
class StageClock:
    """CPU seconds by stage, each measured with time.thread_time() in the thread doing it."""

    seconds: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, stage: str, seconds: float) -> None:
        with self.lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(stage, time.thread_time() - start)

        return timed_call


@contextlib.contextmanager
def instrumented(worker: InferenceWorker, clock: StageClock) -> Iterator[None]:
    """Time the worker's stages where they run: claim and scoring on the main thread, the
    forward inside scoring, the commit on the committing thread, and the decoding as the CPU
    clocks of the decode pool's threads and the batch thread (read, decode, resize, stack)."""
    patched = {name: getattr(worker_module, name) for name in ("claim_batch", "score_prepared", "commit_results")}
    real_call = ModelRunner.__call__
    real_prepare = worker.decoder.prepare
    stage_of = {"claim_batch": "claim", "score_prepared": "scoring", "commit_results": "commit"}
    for name, fn in patched.items():
        setattr(worker_module, name, clock.wrap(stage_of[name], fn))
    ModelRunner.__call__ = clock.wrap("forward (main thread)", real_call)  # type: ignore[method-assign]

    def prepare(*args: Any, **kwargs: Any) -> Any:
        try:
            return real_prepare(*args, **kwargs)
        finally:  # cumulative: the decode threads and this (batch) thread do nothing else
            threads = [*worker.decoder.pool._threads, threading.current_thread()]
            total = sum(thread_cpu_s(t) for t in threads if t.is_alive())
            with clock.lock:
                clock.seconds["decode threads"] = max(clock.seconds.get("decode threads", 0.0), total)

    worker.decoder.prepare = prepare  # type: ignore[method-assign]
    try:
        yield
    finally:
        for name, fn in patched.items():
            setattr(worker_module, name, fn)
        ModelRunner.__call__ = real_call  # type: ignore[method-assign]


def drain(worker: InferenceWorker, factory: sessionmaker[Session]) -> float:
    """Run the worker until the queue is empty; returns the main thread's CPU seconds."""
    stop = threading.Event()

    def until_empty() -> None:
        while queue_depth(factory):
            time.sleep(0.02)
        stop.set()

    watcher = threading.Thread(target=until_empty)
    watcher.start()
    start = time.thread_time()
    worker.run(stop)
    watcher.join()
    return time.thread_time() - start


@dataclass(frozen=True)
class WorkerRun:
    frames_per_s: float
    stages_ms: dict[str, float]  # CPU ms per frame


def run_worker(
    factory: sessionmaker[Session], camera_id: int, frames_dir: Path, paths: list[Path], mode: str,
    args: argparse.Namespace, device: torch.device,
) -> WorkerRun:
    worker = InferenceWorker(factory, frames_dir, worker_options(args, device, mode))
    worker.refresh_models()  # model load, compilation and warm-up: not measured
    queue_frames(factory, camera_id, paths[: worker.batch_size], args.width, args.height)
    worker.run_once()  # threads started, first-batch allocations: not measured either
    queue_frames(factory, camera_id, paths, args.width, args.height)
    clock = StageClock()
    main_s = 0.0

    def timed_drain() -> None:
        nonlocal main_s
        main_s = drain(worker, factory)

    with instrumented(worker, clock):
        elapsed = timed(timed_drain)
    s, n = clock.seconds, len(paths)
    forward_main = s.get("forward (main thread)", 0.0)
    ms = {
        "claim": s.get("claim", 0.0),
        "decode threads": s.get("decode threads", 0.0),
        "rows": s.get("scoring", 0.0) - forward_main,
        "forward main": forward_main,
        "commit": s.get("commit", 0.0),
        "main other": main_s - s.get("claim", 0.0) - s.get("scoring", 0.0),
    }
    return WorkerRun(n / elapsed, {k: v * 1000 / n for k, v in ms.items()})


def worker_options(args: argparse.Namespace, device: torch.device, mode: str) -> WorkerOptions:
    return WorkerOptions(batch_size=args.batch_size, decode_threads=args.decode_threads, device=str(device),
                         preprocess=mode, prefetch=args.prefetch, precision=args.precision, compile=args.compile)


# --- read, decode and resize alone, one thread --------------------------------------------


def split_decode(paths: list[Path], runner: ModelRunner, mode: str) -> dict[str, float]:
    """CPU ms per frame of reading, decoding and resizing, each alone on this thread (torch
    limited to this one thread, so its intra-op helpers do none of the work unseen)."""
    pre = runner.preprocessor
    spent = {"read": 0.0, "decode": 0.0, "resize": 0.0}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _split_into(spent, paths, pre, mode)
    finally:
        torch.set_num_threads(threads)
    return {k: v * 1000 / len(paths) for k, v in spent.items()}


def _split_into(spent: dict[str, float], paths: list[Path], pre: Any, mode: str) -> None:
    for path in paths:
        t0 = time.thread_time()
        data = read_image_file(path, path.name)
        check_image(data, path.name)
        t1 = time.thread_time()
        if mode == "fast":
            pixels = decode_jpeg_cpu(data)
            t2 = time.thread_time()
            assert pre.tensor_resize is not None, "the fast path cannot reproduce this learner"
            pre.tensor_resize(pixels)
        else:
            with Image.open(path) as im:
                rgb = im.convert("RGB")
            t2 = time.thread_time()
            pre.item(rgb)
        t3 = time.thread_time()
        spent["read"] += t1 - t0
        spent["decode"] += t2 - t1
        spent["resize"] += t3 - t2


# --- memory over a long run ----------------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def endurance(
    factory: sessionmaker[Session], camera_id: int, frames_dir: Path, paths: list[Path], args: argparse.Namespace,
    device: torch.device,
) -> list[tuple[float, float, float, int]]:
    """The worker for ``args.duration`` s on a queue kept topped up; every ``args.rss_every`` s:
    (elapsed s, RSS MB, peak RSS MB so far, frames scored)."""
    worker = InferenceWorker(factory, frames_dir, worker_options(args, device, args.endurance_preprocess))
    worker.refresh_models()
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,))
    queued = 0

    def feed() -> None:
        nonlocal queued
        while not stop.is_set():
            try:
                if queue_depth(factory) < 4 * worker.batch_size:
                    queue_frames(factory, camera_id, paths, args.width, args.height)
                    queued += len(paths)
            except sa.exc.OperationalError as exc:  # the write lock stayed taken: try again
                print(f"  feeder: {exc.orig or exc}", flush=True)
            stop.wait(0.2)

    feeder = threading.Thread(target=feed)
    feeder.start()
    runner.start()
    samples = []
    started = time.monotonic()
    with contextlib.suppress(KeyboardInterrupt):
        while (elapsed := time.monotonic() - started) < args.duration:
            stop.wait(min(args.rss_every, args.duration - elapsed))
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            samples.append((time.monotonic() - started, rss_mb(), peak, queued - queue_depth(factory)))
            print(f"  {samples[-1][0]:.0f} s: RSS {samples[-1][1]:.0f} MB, peak {peak:.0f} MB, "
                  f"{samples[-1][3]} frames scored", flush=True)
    stop.set()
    runner.join()
    feeder.join()
    return samples


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=512)
    parser.add_argument("--predict-frames", type=int, default=64)
    parser.add_argument("--get-preds-frames", type=int, default=None, help="default: --frames")
    parser.add_argument("--split-frames", type=int, default=32, help="frames for the one-thread decode split")
    parser.add_argument("--batch-size", type=int, default=None, help="default: by the device (64 CPU, 256 CUDA)")
    parser.add_argument("--decode-threads", type=int, default=2)
    parser.add_argument("--prefetch", type=int, default=WorkerOptions.prefetch)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--preprocess", default="exact,fast", help="paths to run end to end, comma-separated")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile (its warm-up is not measured)")
    parser.add_argument("--database-url", default=None, help="an empty database; default SQLite in a temp folder")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--duration", type=float, default=0.0, help="then run the worker this long, RSS sampled")
    parser.add_argument("--rss-every", type=float, default=60.0)
    parser.add_argument("--endurance-preprocess", default="auto")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from fastai.learner import load_learner

    device = pick_device(None if args.device == "auto" else args.device)
    batch = batch_size_for(args.batch_size, device)
    modes = [m.strip() for m in args.preprocess.split(",") if m.strip()]
    work = Path(tempfile.mkdtemp(prefix="bearwatch-bench-"))
    frames_dir = work / "frames"
    frames_dir.mkdir()
    paths = make_frames(frames_dir, args.frames, args.width, args.height)
    model_path = make_learner(work)
    learn = load_learner(model_path, cpu=device.type == "cpu")
    if device.type == "cuda":
        learn.dls.to(device)
        learn.model.to(device)
    results: dict[str, float] = {}

    # (a) learn.predict, one image at a time
    subset = paths[: args.predict_frames]
    with learn.no_bar(), learn.no_logging():
        learn.predict(subset[0])  # warm-up
        results["(a) learn.predict loop"] = len(subset) / timed(lambda: [learn.predict(p) for p in subset])

    # (b) fastai's batched path
    def get_preds() -> None:
        dl = learn.dls.test_dl(some, bs=batch, num_workers=0)
        with learn.no_bar(), learn.no_logging():
            learn.get_preds(dl=dl)

    some = paths[: args.get_preds_frames or len(paths)]
    results["(b) test_dl + get_preds"] = len(some) / timed(get_preds)

    # (c) the bare forward on ready tensors (the ceiling), with the worker's runner options
    runner = ModelRunner(learn, device, options=RunnerOptions(args.precision, args.compile, batch))
    runner.warm_up()
    ready = torch.stack([runner.preprocessor.item(Image.open(p).convert("RGB")) for p in paths[:batch]])
    batches = max(1, len(paths) // batch)

    def forward() -> None:
        for _ in range(batches):
            runner(ready)

    forward()
    cpu0 = time.process_time()
    results["(c) bare forward, ready tensors"] = batches * batch / timed(forward)
    forward_cpu_ms = (time.process_time() - cpu0) * 1000 / (batches * batch)  # every torch thread

    # (d) bearwatch's worker: JPEG on disk -> rows in the database
    factory = open_database(args.database_url, work)
    camera_id = bench_camera(factory, model_path)
    runs = {}
    for mode in modes:
        runs[mode] = run_worker(factory, camera_id, frames_dir, paths, mode, args, device)
        results[f"(d) bearwatch worker, {mode} preprocessing"] = runs[mode].frames_per_s
    splits = {mode: split_decode(paths[: args.split_frames], runner, mode) for mode in modes}

    db = factory.kw["bind"].dialect.name
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} torch threads)"
    print(f"\ndevice: {name}; ResNet-18 at 224 px; {len(paths)} frames {args.width}x{args.height} JPEG q90; "
          f"batch {batch}; {args.decode_threads} decode threads; prefetch {args.prefetch}; precision {args.precision}"
          f"{'; compiled' if args.compile else ''}; {db}")
    print(f"load: {load()}\n")
    print("| path | frames/s | vs (a) predict | vs (c) bare forward |")
    print("|---|---:|---:|---:|")
    a, c = results["(a) learn.predict loop"], results["(c) bare forward, ready tensors"]
    for label, fps in results.items():
        print(f"| {label} | {fps:.1f} | {fps / a:.1f}x | {fps / c:.2f} |")

    print("\n| stage: CPU ms per frame (thread CPU time) | " + " | ".join(modes) + " |")
    print("|---|" + "---:|" * len(modes))
    rows: list[tuple[str, Callable[[str], float]]] = [
        ("claim (main thread)", lambda m: runs[m].stages_ms["claim"]),
        ("read file (one thread, alone)", lambda m: splits[m]["read"]),
        ("decode (one thread, alone: PIL / torchvision)", lambda m: splits[m]["decode"]),
        ("resize + to tensor (one thread, alone: fastai / tensor)", lambda m: splits[m]["resize"]),
        ("read + decode + resize + stack in the worker (decode and batch threads; torch's intra-op helpers unseen)",
         lambda m: runs[m].stages_ms["decode threads"]),
        ("forward, bare (all torch threads, process CPU)", lambda m: forward_cpu_ms),
        ("forward in the worker (main thread's share)", lambda m: runs[m].stages_ms["forward main"]),
        ("scoring rows (score_prepared minus the forward, main thread)", lambda m: runs[m].stages_ms["rows"]),
        ("commit (committing thread)", lambda m: runs[m].stages_ms["commit"]),
        ("rest of the main thread (loop, waits, stats, heartbeat)", lambda m: runs[m].stages_ms["main other"]),
        ("**everything except decode and forward**",
         lambda m: sum(runs[m].stages_ms[k] for k in ("claim", "rows", "commit", "main other"))),
    ]
    for label, value in rows:
        print(f"| {label} | " + " | ".join(f"{value(m):.2f}" for m in modes) + " |")
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")

    if args.duration > 0:
        print(f"\nendurance: {args.duration:.0f} s, {args.endurance_preprocess} preprocessing, RSS every "
              f"{args.rss_every:.0f} s (the first interval is the warm-up)")
        samples = endurance(factory, camera_id, frames_dir, paths, args, device)
        print("\n| after s | RSS MB | peak RSS MB | frames scored |\n|---:|---:|---:|---:|")
        for elapsed, rss, peak, scored in samples:
            print(f"| {elapsed:.0f} | {rss:.0f} | {peak:.0f} | {scored} |")
        if len(samples) >= 2:
            growth = samples[-1][2] / samples[0][2] - 1
            print(f"\npeak RSS growth after warm-up: {growth * 100:+.1f}% ({'flat' if growth < 0.10 else 'NOT flat'})")
        print(f"load: {load()}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
