"""Inference throughput: bearwatch's worker against fastai's own paths, in one process.

    .venv/bin/python bench/inference.py [--frames N] [--predict-frames N] [--batch-size B] [--device auto|cpu|cuda]

Prints frames/s for (a) a `learn.predict` loop, (b) fastai's `test_dl` + `get_preds`,
(c) the bare model forward on ready tensors (the ceiling), (d) bearwatch's worker end
to end (JPEG on disk -> rows in SQLite), and the ratios. ResNet-18 at 224 px, random
weights (speed does not depend on them), 640x480 JPEG frames from the demo footage.
Runs unchanged on a CUDA machine.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
import warnings
from datetime import timedelta
from pathlib import Path

import cv2
import sqlalchemy as sa
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bearwatch.db import make_engine, session_factory
from bearwatch.demo.footage import FootageSpec, render_frame
from bearwatch.migrations import upgrade_to_head
from bearwatch.schema import Frame, FrameQueueEntry, utcnow
from inference.registry import register_model
from inference.runner import ModelRunner, pick_device
from inference.worker import InferenceWorker, WorkerOptions
from ingest.cameras import add_camera
from shadow.sites import add_site

SPEC = FootageSpec("bench", seed=5, width=640, height=480)


def make_frames(directory: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        path = directory / f"{i:06d}.jpg"
        cv2.imwrite(str(path), render_frame(SPEC, (i * 0.37) % SPEC.duration_s), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def make_learner(directory: Path) -> Path:
    from fastai.vision.all import ImageDataLoaders, Normalize, Resize, imagenet_stats, resnet18, vision_learner

    folder = directory / "train"
    for label in ("bear", "empty"):
        (folder / label).mkdir(parents=True)
        for i in range(8):
            cv2.imwrite(str(folder / label / f"{i}.jpg"), render_frame(SPEC, i * 3.0 + (60 if label == "empty" else 0)))
    dls = ImageDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, bs=4, num_workers=0, item_tfms=Resize(224),
                                       batch_tfms=Normalize.from_stats(*imagenet_stats))
    learn = vision_learner(dls, resnet18, pretrained=False)
    learn.export(directory / "resnet18-224.pkl")
    return directory / "resnet18-224.pkl"


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=512)
    parser.add_argument("--predict-frames", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--decode-threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from fastai.learner import load_learner

    device = pick_device(None if args.device == "auto" else args.device)
    work = Path(tempfile.mkdtemp(prefix="bearwatch-bench-"))
    frames_dir = work / "frames"
    frames_dir.mkdir()
    paths = make_frames(frames_dir, args.frames)
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
        results["a"] = len(subset) / timed(lambda: [learn.predict(p) for p in subset])

    # (b) fastai's batched path
    def get_preds() -> None:
        dl = learn.dls.test_dl(paths, bs=args.batch_size, num_workers=0)
        with learn.no_bar(), learn.no_logging():
            learn.get_preds(dl=dl)

    results["b"] = len(paths) / timed(get_preds)

    # (c) the bare forward on ready tensors (the ceiling)
    runner = ModelRunner(learn, device)
    ready = runner.preprocessor.batch(
        torch.stack([runner.preprocessor.item(Image.open(p).convert("RGB"))
                     for p in paths[: args.batch_size]]), device)
    if device.type == "cuda":
        ready = ready.contiguous(memory_format=torch.channels_last)
    batches = max(1, len(paths) // args.batch_size)

    def forward() -> None:
        with torch.inference_mode(), torch.autocast(device.type, enabled=device.type == "cuda", dtype=torch.float16):
            for _ in range(batches):
                runner.model(ready)

    forward()
    results["c"] = batches * args.batch_size / timed(forward)

    # (d) bearwatch's worker: JPEG on disk -> rows in SQLite
    engine = make_engine(f"sqlite:///{work / 'bench.db'}")
    upgrade_to_head(engine)
    factory = session_factory(engine)
    with factory.begin() as session:
        site = add_site(session, "bench", actor="bench")
        camera = add_camera(session, site, "cam", "bench.avi", interval_s=5)
        base = utcnow()
        session.add_all(
            Frame(camera_id=camera.id, captured_at=base + timedelta(milliseconds=i), path=p.name, sha256="0" * 64,
                  size_bytes=p.stat().st_size, width=640, height=480)
            for i, p in enumerate(paths)
        )
        register_model(session, model_path, name="resnet18", positive=["bear"])
    worker = InferenceWorker(factory, frames_dir, WorkerOptions(
        batch_size=args.batch_size, decode_threads=args.decode_threads, device=str(device)))
    worker.refresh_models()

    def drain() -> None:
        stop = threading.Event()

        def until_empty() -> None:
            while True:
                with factory() as s:
                    left = s.scalar(sa.select(sa.func.count()).select_from(FrameQueueEntry))  # scored or failed
                if not left:
                    stop.set()
                    return
                time.sleep(0.05)

        watcher = threading.Thread(target=until_empty)
        watcher.start()
        worker.run(stop)
        watcher.join()

    results["d"] = len(paths) / timed(drain)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} torch threads)"
    print(f"\ndevice: {name}; ResNet-18 at 224 px; {len(paths)} frames 640x480 JPEG; batch {args.batch_size}")
    print("| path | frames/s | vs (a) predict | vs (c) bare forward |")
    print("|---|---:|---:|---:|")
    labels = {"a": "(a) learn.predict loop", "b": "(b) test_dl + get_preds", "c": "(c) bare forward, ready tensors",
              "d": "(d) bearwatch worker, JPEG on disk -> DB rows"}
    for key, label in labels.items():
        print(f"| {label} | {results[key]:.1f} | {results[key] / results['a']:.2f}x | {results[key] / results['c']:.2f} |")
    print(f"peak RSS {peak_rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
