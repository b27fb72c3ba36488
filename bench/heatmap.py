"""What heat maps of flagged frames cost the inference worker, in one process.

    .venv/bin/python bench/heatmap.py [--batch-size B] [--size PX] [--rounds N] [--device cpu|cuda]

A fastai vision_learner's model (ResNet-18 body and fastai head, random weights: speed
does not depend on them) at 224 px. Measures, with the same model and inputs:
(a) the scoring pass of a batch (the runner's forward in inference mode),
(b) the same pass with the Grad-CAM hook on (inference.heatmap keeps the body's input),
(c) Grad-CAM of one flagged row (about 1% of a batch of 64),
and prints (b)/(a) and (c)/(a): the worker's cost per batch with a flag in it.
Medians of N rounds after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.heatmap import GradCam


def _median_s(fn: Callable[[], object], rounds: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    from fastai.vision.all import create_vision_model, resnet18  # heavy: only here

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.batch_size, 3, args.size, args.size, device=device)

    plain = create_vision_model(resnet18, n_out=3, pretrained=False).to(device).eval()
    hooked = create_vision_model(resnet18, n_out=3, pretrained=False).to(device).eval()
    hooked.load_state_dict(plain.state_dict())
    cam = GradCam(hooked)

    def score(model: torch.nn.Module) -> Callable[[], object]:
        @torch.inference_mode()
        def run() -> object:
            return model(x).softmax(-1).cpu()
        return run

    a = _median_s(score(plain), args.rounds, device)
    b = _median_s(score(hooked), args.rounds, device)
    c = _median_s(lambda: cam.maps([0], [0]), args.rounds, device)
    grid = cam.maps([0], [0])[0]
    print(f"load: {os.getloadavg()[0]:.1f} (1-min load average, {os.cpu_count()} CPUs); device {device}; "
          f"batch {args.batch_size} at {args.size} px; medians of {args.rounds}")
    print(f"(a) scoring pass:                    {a * 1000:8.1f} ms")
    print(f"(b) scoring pass with the hook:      {b * 1000:8.1f} ms   (b)/(a) = {b / a:.3f}")
    print(f"(c) Grad-CAM of one flagged row:     {c * 1000:8.1f} ms   (c)/(a) = {c / a:.3f}")
    print(f"grid {grid.shape[0]}x{grid.shape[1]} = {grid.nbytes} bytes stored")


if __name__ == "__main__":
    main()
