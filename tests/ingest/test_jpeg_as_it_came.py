"""Camera JPEGs (HTTP snapshots, MJPEG parts, image folders) are stored byte for byte,
and what the model later decodes from the store is the picture the frame checks saw:
JPEGs that decoders read differently (EXIF orientation, CMYK, bytes after the image,
...) are re-encoded upright as before; PNGs are stored as JPEGs; a corrupt JPEG is
refused and counted as before. RTSP, device and video-file frames are encoded as before
(tests/ingest/test_sampling.py, test_rtsp.py)."""

from __future__ import annotations

import hashlib
import io
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Frame
from ingest.jpeg import reencode_reason
from ingest.sampler import JPEG_QUALITY, Outcome, sample_camera
from ingest.store import FrameStore
from tests.ingest.helpers import CameraHTTP, camera, frames_of, jpeg, make_camera, scene, write_folder

T0 = datetime(2026, 7, 4, 22, 0, tzinfo=timezone.utc)


def camera_jpeg(image: np.ndarray, *, orientation: int | None = 1, mode: str = "RGB", progressive: bool = False) -> bytes:
    """A JPEG as an IP camera writes it (libjpeg via PIL, an EXIF block, quality 85)."""
    picture = Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).convert(mode)
    exif = Image.Exif()
    exif[0x010F] = "Trailcam"  # Make
    if orientation is not None:
        exif[0x0112] = orientation
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=85, exif=exif.tobytes(), progressive=progressive)
    return out.getvalue()


def as_before(image: np.ndarray) -> bytes:
    """What ingest stored for every frame before: the decoded picture at JPEG quality 90."""
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()


def model_view(path: Path) -> np.ndarray:
    """The stored file as the model's decoder sees it (fastai's load: PIL, RGB; no EXIF
    orientation applied), as BGR."""
    with Image.open(path) as im:
        return cv2.cvtColor(np.asarray(im.convert("RGB")), cv2.COLOR_RGB2BGR)


def checks_view(data: bytes) -> np.ndarray:
    """What ingest's frame checks decode from the camera's bytes (OpenCV)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def _sample_one(factory: sessionmaker[Session], store: FrameStore, source: str) -> tuple[Frame, bytes]:
    camera_id = make_camera(factory, source)
    assert sample_camera(factory, store, camera_id) is Outcome.STORED
    [frame] = frames_of(factory, camera_id)
    return frame, store.absolute(frame.path).read_bytes()


@pytest.mark.parametrize("path", ["/snap.jpg", "/mjpeg"])
def test_an_http_camera_jpeg_is_stored_byte_for_byte(
    factory: sessionmaker[Session], tmp_path: Path, path: str
) -> None:
    store = FrameStore(tmp_path / "frames")
    with CameraHTTP() as cam:
        cam.picture = camera_jpeg(scene(31))
        frame, stored = _sample_one(factory, store, cam.url(path))
    sent = hashlib.sha256(cam.picture).hexdigest()
    assert hashlib.sha256(stored).hexdigest() == frame.sha256 == sent  # not re-encoded at quality 90
    assert frame.size_bytes == len(cam.picture) and (frame.width, frame.height) == (320, 240)


def test_a_folder_jpeg_is_stored_byte_for_byte(factory: sessionmaker[Session], tmp_path: Path) -> None:
    data = camera_jpeg(scene(32), progressive=True)
    write_folder(tmp_path / "replay", [(T0, data)])
    store = FrameStore(tmp_path / "frames")
    frame, stored = _sample_one(factory, store, f"folder://{tmp_path / 'replay'}")
    assert hashlib.sha256(stored).hexdigest() == frame.sha256 == hashlib.sha256(data).hexdigest()
    assert frame.captured_at == T0


def test_a_png_snapshot_is_stored_as_a_jpeg(factory: sessionmaker[Session], tmp_path: Path) -> None:
    picture = scene(33)
    store = FrameStore(tmp_path / "frames")
    with CameraHTTP() as cam:
        cam.picture = cv2.imencode(".png", picture)[1].tobytes()
        frame, stored = _sample_one(factory, store, cam.url("/snap.jpg"))
    assert stored == as_before(picture) and frame.path.endswith(".jpg")  # the frame store holds JPEGs


def test_a_corrupt_jpeg_is_refused_and_counted_as_before(factory: sessionmaker[Session], tmp_path: Path) -> None:
    whole = camera_jpeg(scene(34))
    store = FrameStore(tmp_path / "frames")
    with CameraHTTP() as cam:
        cam.picture = whole[: len(whole) // 2]  # cut off mid-scan (a dropped connection)
        camera_id = make_camera(factory, cam.url("/snap.jpg"))
        site = str(camera(factory, camera_id).site_id)
        labels = {"site": site, "camera": str(camera_id), "outcome": "failed"}
        before = REGISTRY.get_sample_value("bearwatch_ingest_slots_total", labels) or 0.0
        assert sample_camera(factory, store, camera_id) is Outcome.FAILED
    assert REGISTRY.get_sample_value("bearwatch_ingest_slots_total", labels) == before + 1
    assert frames_of(factory, camera_id) == [] and not any(store.root.rglob("*.jpg"))
    assert "snapshot: corrupt image" in (camera(factory, camera_id).last_error or "")


HOSTILE = {
    "exif-orientation-6": lambda: camera_jpeg(scene(35), orientation=6),
    "exif-orientation-3": lambda: camera_jpeg(scene(36), orientation=3),
    "cmyk": lambda: camera_jpeg(scene(37), mode="CMYK"),
    "trailing-garbage": lambda: camera_jpeg(scene(38)) + b"<script>alert(1)</script>",
    "second-picture-appended": lambda: camera_jpeg(scene(39)) + camera_jpeg(scene(40)),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_jpeg_that_decoders_read_differently_is_stored_as_the_checks_saw_it(
    factory: sessionmaker[Session], tmp_path: Path, kind: str
) -> None:
    data = HOSTILE[kind]()
    store = FrameStore(tmp_path / "frames")
    with CameraHTTP() as cam:
        cam.picture = data
        frame, stored = _sample_one(factory, store, cam.url("/snap.jpg"))
    checked = checks_view(data)  # upright for the EXIF ones: OpenCV applies the orientation
    assert stored == as_before(checked)  # re-encoded as before
    assert np.array_equal(model_view(store.absolute(frame.path)), checks_view(stored))  # no orientation left
    assert checked.shape == (frame.height, frame.width, 3)


def test_a_camera_on_its_side_is_stored_upright(factory: sessionmaker[Session], tmp_path: Path) -> None:
    data = camera_jpeg(scene(35), orientation=6)  # mounted on its side: turn 90 degrees clockwise to view
    as_sent = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert as_sent is not None
    write_folder(tmp_path / "replay", [(T0, data)])
    store = FrameStore(tmp_path / "frames")
    frame, stored = _sample_one(factory, store, f"folder://{tmp_path / 'replay'}")
    assert (frame.width, frame.height) == (240, 320)
    assert stored == as_before(cv2.rotate(as_sent, cv2.ROTATE_90_CLOCKWISE))  # what the model reads is upright


def _without_huffman_tables(data: bytes) -> bytes:
    """The same JPEG without its DHT segments (abbreviated, as MJPEG/AVI1 cameras send)."""
    out, i = bytearray(data[:2]), 2
    while data[i + 1] != 0xDA:
        end = i + 2 + int.from_bytes(data[i + 2:i + 4], "big")
        if data[i + 1] != 0xC4:
            out += data[i:end]
        i = end
    return bytes(out + data[i:])


def _sof_patched(data: bytes, offset: int, value: int) -> bytes:
    patched = bytearray(data)
    patched[data.index(b"\xff\xc0") + offset] = value
    return bytes(patched)


KEPT = {
    "baseline": lambda: camera_jpeg(scene(41)),
    "no-exif": lambda: jpeg(scene(42)),
    "progressive": lambda: camera_jpeg(scene(43), progressive=True),
    "greyscale": lambda: camera_jpeg(scene(44), mode="L"),
    "restart-markers": lambda: cv2.imencode(".jpg", scene(45), [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])[1].tobytes(),
    "damaged-scan-ending-in-eoi": lambda: (lambda d: d[: len(d) * 2 // 3] + b"\xff\xd9")(camera_jpeg(scene(46))),
}
REENCODED = {
    "png": (lambda: cv2.imencode(".png", scene(50))[1].tobytes(), "not a JPEG"),
    "exif-orientation": (lambda: camera_jpeg(scene(51), orientation=8), "EXIF orientation 8"),
    "cmyk": (lambda: camera_jpeg(scene(52), mode="CMYK"), "4 colour components"),
    "12-bit": (lambda: _sof_patched(jpeg(scene(53)), 4, 12), "12-bit samples"),
    "arithmetic": (lambda: _sof_patched(jpeg(scene(54)), 1, 0xC9), "SOF9"),
    "abbreviated": (lambda: _without_huffman_tables(jpeg(scene(55))), "no Huffman tables"),
    "trailing-bytes": (lambda: jpeg(scene(56)) + b"\x00" * 7, "7 bytes after the end-of-image marker"),
    "no-end-marker": (lambda: jpeg(scene(57))[:-2], "no end-of-image marker"),
    "broken-segment-length": (lambda: jpeg(scene(58))[:30], "damaged JPEG structure"),
}


@pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning")
@pytest.mark.parametrize("kind", list(KEPT))
def test_a_kept_jpeg_decodes_to_the_same_pixels_for_the_checks_and_the_model(kind: str) -> None:
    # The premise of storing bytes as they came, pinned for the installed OpenCV, Pillow
    # and torchvision (the tensor path's CPU decoder, RGB, no EXIF orientation): the same
    # libjpeg-turbo pixels. nvJPEG (CUDA) is not covered here.
    data = KEPT[kind]()
    checked = checks_view(data)
    assert reencode_reason(data, checked.shape) is None
    with Image.open(io.BytesIO(data)) as im:
        fastai = cv2.cvtColor(np.asarray(im.convert("RGB")), cv2.COLOR_RGB2BGR)
    assert np.array_equal(fastai, checked)
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    tensor = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    assert np.array_equal(cv2.cvtColor(tensor.permute(1, 2, 0).numpy(), cv2.COLOR_RGB2BGR), checked)


@pytest.mark.parametrize("kind", list(REENCODED))
def test_jpegs_not_kept_say_why(kind: str) -> None:
    make, why = REENCODED[kind]
    data = make()
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    reason = reencode_reason(data, decoded.shape if decoded is not None else (240, 320, 3))
    assert reason is not None and why in reason


def test_a_size_other_than_the_headers_is_not_kept() -> None:
    data = jpeg(scene(60))
    assert reencode_reason(data, (240, 320, 3)) is None
    assert reencode_reason(data, (320, 240, 3)) == "decoded 240x320 px, header says 320x240"
