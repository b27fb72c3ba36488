"""The tensor ("fast") preprocessing path: torchvision decode and fastai's Resize as tensor ops.

It must score like ``learn.predict`` within a measured bound (fastai resizes with PIL, we with
torchvision's antialiased bilinear: at most one uint8 level apart), agree on flags, crop and
pad exactly where fastai does, and send any frame the tensor decoder cannot take (PNG, or a
JPEG it refuses) through the exact path, so every frame still gets its input.
"""

from __future__ import annotations

import io
import itertools
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from bearwatch.demo.footage import DEMO_CAMERAS, FootageSpec, render_frame
from inference.decode import FrameDecoder, FrameFile, PreparedBatch, resolve_preprocess
from inference.preprocess import Preprocessor
from inference.runner import ModelRunner
from inference.tensor_preprocess import Box, crop_pad, tensor_resize_for
from tests.inference.test_parity import METHODS, learners  # noqa: F401 - the parity learners, reused

# Measured with the parity learners (40 px inputs, where one level matters most) on the
# frames below (the test prints a run's figures): max 1 uint8 level, max 4.0e-4 in
# probability. The bounds leave a 2.5x margin on the probability.
MAX_PIXEL_DIFF = 1
MAX_PROBABILITY_DIFF = 1e-3
THRESHOLD = 0.5



def _photo_like(width: int, height: int, seed: int) -> np.ndarray:
    """A BGR frame with a photo's statistics (nothing can be downloaded here): smooth
    multi-scale shading, fine texture, hard edges and sensor noise, which JPEG and the
    resize filters treat very differently from the flat synthetic scenes."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float32)
    for cells, weight in ((4, 90.0), (16, 50.0), (64, 30.0), (256, 20.0)):
        small = rng.random((max(2, cells * height // width), cells, 3), dtype=np.float32)
        image += weight * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, 12, image.shape).astype(np.float32)  # grass-like detail / sensor noise
    for _ in range(12):  # branches, posts: hard edges at every angle
        p, q = rng.integers(0, (width, height), 2), rng.integers(0, (width, height), 2)
        colour = tuple(float(c) for c in rng.integers(0, 255, 3))
        cv2.line(image, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), colour, int(rng.integers(1, 6)))
    return np.clip(image, 0, 255).astype(np.uint8)


def _frames() -> dict[str, np.ndarray]:
    """Assorted sizes: landscape and portrait, odd sides, smaller than the 40 px input (upscaled), 720p."""
    return {
        "scene_portrait": render_frame(FootageSpec("tall", seed=5, width=240, height=400), 17.0),
        "scene_odd": render_frame(FootageSpec("odd", seed=7, width=333, height=187), 41.0),
        "scene_720p": render_frame(FootageSpec("hd", seed=3, width=1280, height=720), 29.0),
        "scene_night": render_frame(DEMO_CAMERAS[2], 45.0),
        "tiny_upscaled": cv2.resize(render_frame(DEMO_CAMERAS[0], 11.0), (36, 33), interpolation=cv2.INTER_AREA),
        "photo_720p": _photo_like(1280, 720, 1),
        "photo_720p_b": _photo_like(1280, 720, 2),
        "photo_portrait": _photo_like(480, 640, 3),
        "photo_odd": _photo_like(1001, 599, 4),
    }


def _write(directory: Path, images: dict[str, np.ndarray]) -> list[FrameFile]:
    files = []
    for i, (name, bgr) in enumerate(images.items()):
        cv2.imwrite(str(directory / f"{name}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])  # a camera's quality
        files.append(FrameFile(i, f"{name}.jpg"))
    return files


def _prepare(root: Path, files: list[FrameFile], pre: Preprocessor, mode: str) -> PreparedBatch:
    decoder = FrameDecoder(root, threads=2, mode=mode)
    try:
        return decoder.prepare(files, {pre.key: pre})
    finally:
        decoder.close()


@pytest.mark.parametrize("method", METHODS)
def test_fast_path_scores_like_learn_predict_within_the_bound(
    method: str, learners: dict[str, Path], tmp_path: Path  # noqa: F811 - the imported fixture
) -> None:
    from fastai.learner import load_learner

    learn = load_learner(learners[method], cpu=True)
    runner = ModelRunner(learn, torch.device("cpu"))
    assert runner.preprocessor.tensor_resize is not None, runner.preprocessor.tensor_refusal
    assert runner.preprocessor.tensor_resize.method == method
    files = _write(tmp_path, _frames())
    fast = _prepare(tmp_path, files, runner.preprocessor, "fast")
    exact = _prepare(tmp_path, files, runner.preprocessor, "exact")
    assert fast.frame_ids == exact.frame_ids == tuple(f.frame_id for f in files) and not fast.errors
    fast_in, exact_in = fast.inputs[runner.preprocessor.key], exact.inputs[runner.preprocessor.key]
    assert fast_in.dtype == torch.uint8 and fast_in.shape == exact_in.shape
    pixel_diff = int((fast_in.int() - exact_in.int()).abs().max())
    ours = runner(fast_in).probabilities.numpy()
    theirs = np.stack([learn.predict(tmp_path / f.path)[2].numpy() for f in files])
    diffs = np.abs(ours - theirs).max(axis=1)
    prob_diff = float(diffs.max())
    photos = np.array([f.path.startswith("photo") for f in files])
    figures = (f"{method}: max pixel diff {pixel_diff}, max probability diff {prob_diff:.2e} "
               f"(scenes {diffs[~photos].max():.2e}, photo-like {diffs[photos].max():.2e})")
    print(figures)  # the measured figures, with -s
    assert pixel_diff <= MAX_PIXEL_DIFF, figures
    assert prob_diff <= MAX_PROBABILITY_DIFF, figures
    # Flags at the threshold agree for every frame outside the tolerance band around it.
    positive = theirs[:, 1]
    decided = np.abs(positive - THRESHOLD) > MAX_PROBABILITY_DIFF
    assert ((ours[:, 1] >= THRESHOLD) == (positive >= THRESHOLD))[decided].all(), (ours[:, 1], positive)


def test_crop_pad_is_exactly_fastais_and_the_resize_within_one_level() -> None:
    """Without a model: every resize method and pad mode against fastai's own Resize, on
    frame sizes where fastai's integer box arithmetic rounds differently (odd sides, pads
    wider than the picture, where np.pad reflects more than once)."""
    from fastai.vision.all import PILImage, Pipeline, Resize, ToTensor, fastuple

    rng = np.random.default_rng(0)
    sizes = [(320, 240), (240, 320), (33, 47), (301, 37), (37, 301), (41, 39), (20, 13)]
    for (w, h), target, method, pad_mode in itertools.product(
        sizes, [40, (30, 50)], METHODS, ["zeros", "border", "reflection"]
    ):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pipeline = Pipeline([Resize(target, method=method, pad_mode=pad_mode), ToTensor()])
        pipeline.split_idx = 1
        plan, why = tensor_resize_for(pipeline)
        assert plan is not None, why
        pixels = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
        box = plan.box(w, h)
        theirs_box = PILImage(Image.fromarray(rgb)).crop_pad(
            (box.width, box.height), fastuple(box.left, box.top), orig_sz=fastuple(w, h), pad_mode=pad_mode
        )
        case = f"{w}x{h} -> {target} {method} {pad_mode}"
        assert torch.equal(crop_pad(pixels, box, pad_mode), torch.from_numpy(np.array(theirs_box)).permute(2, 0, 1)), case
        theirs = torch.as_tensor(pipeline(PILImage(Image.fromarray(rgb))))
        ours = plan(pixels)
        assert ours.shape == theirs.shape, case
        assert int((ours.int() - theirs.int()).abs().max()) <= MAX_PIXEL_DIFF, case


def test_the_box_follows_fastais_truncation() -> None:
    """fastai's pad offset is int(0.5 * negative), truncated towards zero, not floored."""
    from inference.tensor_preprocess import TensorResize

    pad = TensorResize(40, 40, "pad", "zeros")
    assert pad.box(320, 239) == Box(0, -40, 320, 320)  # int(0.5 * -81) == -40, not -41
    crop = TensorResize(40, 40, "crop", "zeros")
    assert crop.box(333, 187) == Box(73, 0, 187, 187)


def _encoded(rgb: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    rgb.save(buffer, fmt, **options)
    return buffer.getvalue()


def _odd_formats(directory: Path) -> list[FrameFile]:
    """Ordinary JPEGs with a PNG, a progressive JPEG and a CMYK JPEG among them."""
    images = [Image.fromarray(cv2.cvtColor(render_frame(DEMO_CAMERAS[0], float(t)), cv2.COLOR_BGR2RGB))
              for t in (3, 9, 15, 21, 27, 33)]
    blobs = {
        "a.jpg": _encoded(images[0], "JPEG", quality=90),
        "png.jpg": _encoded(images[1], "PNG"),  # whatever the name says
        "b.jpg": _encoded(images[2], "JPEG", quality=90),
        "progressive.jpg": _encoded(images[3], "JPEG", quality=90, progressive=True),
        "cmyk.jpg": _encoded(images[4].convert("CMYK"), "JPEG", quality=90),
        "c.jpg": _encoded(images[5], "JPEG", quality=90),
    }
    for name, data in blobs.items():
        (directory / name).write_bytes(data)
    return [FrameFile(i, name) for i, name in enumerate(blobs)]


@pytest.fixture(scope="module")
def crop_runner(learners: dict[str, Path]) -> ModelRunner:  # noqa: F811 - the imported fixture
    from fastai.learner import load_learner

    return ModelRunner(load_learner(learners["crop"], cpu=True), torch.device("cpu"))


def test_png_progressive_and_cmyk_frames_in_a_batch_all_get_their_inputs(
    crop_runner: ModelRunner, tmp_path: Path
) -> None:
    files = _odd_formats(tmp_path)
    pre = crop_runner.preprocessor
    fast, exact = _prepare(tmp_path, files, pre, "fast"), _prepare(tmp_path, files, pre, "exact")
    assert fast.frame_ids == tuple(f.frame_id for f in files) and not fast.errors
    ours, theirs = fast.inputs[pre.key], exact.inputs[pre.key]
    by_name = {f.path: f.frame_id for f in files}
    # The PNG is not a JPEG: it took the exact path, so it is exactly the exact path's input.
    assert torch.equal(ours[by_name["png.jpg"]], theirs[by_name["png.jpg"]])
    # torchvision's CPU decoder takes progressive and CMYK JPEGs (nvJPEG may not: see the CUDA
    # test) and decodes them as PIL does: the tensor resize is the only difference.
    assert int((ours.int() - theirs.int()).abs().max()) <= MAX_PIXEL_DIFF


def test_a_jpeg_the_tensor_decoder_refuses_takes_the_exact_path(crop_runner: ModelRunner, tmp_path: Path) -> None:
    """A JPEG cut short: torchvision refuses it, so the frame goes to PIL, which refuses it
    too, with the exact path's error; the rest of the batch is scored."""
    files = _odd_formats(tmp_path)
    whole = (tmp_path / "b.jpg").read_bytes()
    (tmp_path / "b.jpg").write_bytes(whole[: len(whole) // 2])
    pre = crop_runner.preprocessor
    fast, exact = _prepare(tmp_path, files, pre, "fast"), _prepare(tmp_path, files, pre, "exact")
    broken = next(f.frame_id for f in files if f.path == "b.jpg")
    assert fast.errors == exact.errors and set(fast.errors) == {broken}
    assert fast.reasons == {broken: "decode"}
    assert fast.frame_ids == exact.frame_ids and len(fast.frame_ids) == len(files) - 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG refusals (progressive/CMYK on some "
                    "versions) and the on-device resize need a CUDA device; none here")
def test_on_cuda_refused_frames_fall_back_and_inputs_stay_on_the_device(
    crop_runner: ModelRunner, tmp_path: Path
) -> None:
    files = _odd_formats(tmp_path)
    pre = crop_runner.preprocessor
    device = torch.device("cuda")
    decoder = FrameDecoder(tmp_path, threads=2, mode="fast", device=device)
    try:
        fast = decoder.prepare(files, {pre.key: pre})
    finally:
        decoder.close()
    exact = _prepare(tmp_path, files, pre, "exact")
    assert fast.frame_ids == tuple(f.frame_id for f in files) and not fast.errors
    ours = fast.inputs[pre.key]
    assert ours.device.type == "cuda" and ours.dtype == torch.uint8
    # nvJPEG's IDCT is not libjpeg's: a few levels apart at most, measured by bench/gpu.sh.
    assert int((ours.cpu().int() - exact.inputs[pre.key].int()).abs().max()) <= 8


def test_a_model_the_tensor_path_cannot_reproduce_takes_the_exact_path_with_a_warning(
    crop_runner: ModelRunner, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from fastai.vision.all import CropPad, FlipItem, Pipeline, Resize, ToTensor

    train_only = Pipeline([Resize(40), FlipItem(0.5), ToTensor()])  # FlipItem never runs at valid time
    assert tensor_resize_for(train_only)[0] is not None
    pipeline = Pipeline([Resize(48), CropPad(40), ToTensor()])
    pipeline.split_idx = 1
    plan, why = tensor_resize_for(pipeline)
    assert plan is None and "CropPad" in why
    pre = Preprocessor(item_pipeline=pipeline, batch_steps=(), key="croppad", tensor_refusal=why)
    files = _odd_formats(tmp_path)
    with caplog.at_level(logging.WARNING, logger="inference.decode"):
        fast = _prepare(tmp_path, files, pre, "fast")
    exact = _prepare(tmp_path, files, pre, "exact")
    assert torch.equal(fast.inputs["croppad"], exact.inputs["croppad"])
    assert "CropPad" in caplog.text and "exact" in caplog.text


def test_auto_is_fast_on_cuda_and_exact_on_the_cpu() -> None:
    assert resolve_preprocess("auto", torch.device("cpu")) == "exact"
    assert resolve_preprocess("auto", torch.device("cuda")) == "fast"
    assert resolve_preprocess("fast", torch.device("cpu")) == "fast"
    with pytest.raises(ValueError, match="turbo"):
        resolve_preprocess("turbo", torch.device("cpu"))
