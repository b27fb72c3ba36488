"""The GPU-only figures of bench/gpu.sh: JPEG decode alone, and how far the GPU path's
probabilities are from the CPU exact path's.

    .venv/bin/python bench/gpu.py [--device cuda|cpu] [--frames N] [--batch-size B]

- decode frames/s alone: 1280x720 JPEG bytes already in memory, decoded in batches by nvJPEG
  (``decode_jpegs_cuda``, torchvision's batched decode on the device) and synchronised; on the
  CPU (``--device cpu``, the smoke run) torchvision's decoder on one thread instead;
- parity: for ResNet-18 learners exported with each resize method (crop, squish, pad; random
  weights, 224 px), the max probability difference between the device path (fast
  preprocessing, with each autocast precision) and the CPU exact path (PIL + fastai, fp32,
  equal to ``learn.predict``), over the parity frames: the parity suite's (another scene,
  night, 400x224) and 720p demo frames; and whether flags at 0.5 agree.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bearwatch.demo.footage import DEMO_CAMERAS, FootageSpec, render_frame
from inference.decode import FrameDecoder, FrameFile
from inference.runner import ModelRunner, RunnerOptions, pick_device
from inference.tensor_preprocess import decode_jpeg_cpu, decode_jpegs_cuda

METHODS = ("crop", "squish", "pad")


def decode_rate(device: torch.device, frames: int, batch: int) -> float:
    """Frames/s of JPEG decode alone (720p, bytes in memory)."""
    spec = FootageSpec("decode", seed=3, width=1280, height=720)
    unique = [cv2.imencode(".jpg", render_frame(spec, t * 5.3), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
              for t in range(16)]
    files = [unique[i % len(unique)] for i in range(frames)]

    def run() -> None:
        for start in range(0, len(files), batch):
            chunk = files[start:start + batch]
            if device.type == "cuda":
                decoded = decode_jpegs_cuda(chunk, device)
                assert all(d is not None for d in decoded), "nvJPEG refused a plain baseline JPEG"
            else:
                for data in chunk:
                    decode_jpeg_cpu(data)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    run()  # warm-up: nvJPEG handles, allocator
    started = time.perf_counter()
    run()
    return len(files) / (time.perf_counter() - started)


def parity_frames(directory: Path) -> list[Path]:
    """The parity suite's frames (tests/inference/test_parity.py) and 720p demo frames."""
    unseen = FootageSpec("other", seed=99, width=400, height=224)
    big = FootageSpec("big", seed=7, width=1280, height=720)
    images = [render_frame(unseen, t) for t in (3.0, 31.0, 47.0)] + [render_frame(DEMO_CAMERAS[2], 11.0)]
    images += [render_frame(big, t) for t in (5.0, 17.0, 41.0, 77.0)]
    paths = []
    for i, bgr in enumerate(images):
        paths.append(directory / f"{i}.jpg")
        cv2.imwrite(str(paths[-1]), bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return paths


def make_learner(directory: Path, method: str) -> Path:
    from fastai.vision.all import (
        ImageDataLoaders,
        Normalize,
        Resize,
        ResizeMethod,
        imagenet_stats,
        resnet18,
        set_seed,
        vision_learner,
    )

    folder = directory / "train"
    if not folder.exists():
        spec = DEMO_CAMERAS[1]
        for label, times in {"a": range(0, 32, 4), "b": range(60, 92, 4)}.items():
            (folder / label).mkdir(parents=True)
            for t in times:
                cv2.imwrite(str(folder / label / f"{t}.jpg"), render_frame(spec, float(t)))
    set_seed(0)
    dls = ImageDataLoaders.from_folder(
        folder, valid_pct=0.25, seed=0, bs=4, num_workers=0,
        item_tfms=Resize(224, method=getattr(ResizeMethod, method.capitalize())),
        batch_tfms=Normalize.from_stats(*imagenet_stats),
    )
    learn = vision_learner(dls, resnet18, pretrained=False)
    learn.export(directory / f"{method}.pkl")
    return directory / f"{method}.pkl"


def probabilities(model_path: Path, frames_dir: Path, paths: list[Path], device: torch.device, mode: str,
                  precision: str) -> np.ndarray:
    from fastai.learner import load_learner

    learn = load_learner(model_path, cpu=True)
    runner = ModelRunner(learn, device, options=RunnerOptions(precision=precision))
    decoder = FrameDecoder(frames_dir, threads=2, pin_memory=device.type == "cuda", mode=mode, device=device)
    try:
        prepared = decoder.prepare([FrameFile(i, p.name) for i, p in enumerate(paths)],
                                   {runner.preprocessor.key: runner.preprocessor})
    finally:
        decoder.close()
    assert not prepared.errors, prepared.errors
    return runner(prepared.inputs[runner.preprocessor.key]).probabilities.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=4096, help="frames decoded for the decode rate")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--precisions", default=None, help="default: fp32,fp16,bf16 (CUDA) or fp32 (CPU)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    device = pick_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    what = "nvJPEG, batched" if device.type == "cuda" else "torchvision on the CPU, one thread"
    rate = decode_rate(device, args.frames, args.batch_size)
    print(f"\ndevice: {name}")
    print(f"| JPEG decode alone (1280x720, {what}) | {rate:.0f} frames/s |")

    precisions = (args.precisions or ("fp32,fp16,bf16" if device.type == "cuda" else "fp32")).split(",")
    work = Path(tempfile.mkdtemp(prefix="bearwatch-gpu-"))
    frames_dir = work / "frames"
    frames_dir.mkdir()
    paths = parity_frames(frames_dir)
    print(f"\nparity: {len(paths)} frames, ResNet-18 224 px random weights; max |p - p_exact_cpu| "
          "(the CPU exact path equals learn.predict)")
    print("| learner | " + " | ".join(f"fast, {p}" for p in precisions) + " | flags at 0.5 that differ |")
    print("|---|" + "---:|" * len(precisions) + "---|")
    for method in METHODS:
        model_path = make_learner(work, method)
        truth = probabilities(model_path, frames_dir, paths, torch.device("cpu"), "exact", "fp32")
        diffs, differ = [], 0
        for precision in precisions:
            ours = probabilities(model_path, frames_dir, paths, device, "fast", precision)
            diffs.append(float(np.abs(ours - truth).max()))
            differ += int(((ours[:, 0] >= 0.5) != (truth[:, 0] >= 0.5)).sum())
        print(f"| {method} | " + " | ".join(f"{d:.1e}" for d in diffs) + f" | {differ} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
