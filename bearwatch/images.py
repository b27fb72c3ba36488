"""Limits on the images we accept, shared by ingest (camera sources) and inference
(stored frames), checked before anything is decoded.

A hostile or broken file must cost at most a bounded read and a header parse: the byte
cap bounds the read, and the size written in the header (JPEG SOF, PNG IHDR, else PIL's
lazy ``Image.open``, which reads only the header) is checked against the pixel cap
before a decoder allocates the picture (a 30000x30000 JPEG would take 2.7 GB decoded).
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from bearwatch.errors import FrameError

# 32 MiB: a 4K frame is at most ~25 MB even as an uncompressed-looking PNG (3840x2160x3)
# and a few MB as a JPEG, so real cameras fit with room; more is not a camera picture.
MAX_IMAGE_BYTES = 32 * 1024 * 1024
# Sides a frame may have; larger ones are refused before decoding, smaller after.
MIN_SIDE, MAX_SIDE = 32, 8192
MAX_PIXELS = MAX_SIDE * MAX_SIDE  # PIL's MAX_IMAGE_PIXELS where we decode with PIL (inference)
# The files taken as images in a folder: replayed footage (ingest), reference images (inference).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); not C4/C8/CC.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageRefused(FrameError):
    """An image refused before decoding; each kind names the outcome it is counted as."""

    reason: str  # an ingest.sampler.Outcome value


class ImageTooLarge(ImageRefused):
    """Over the byte cap, or over MAX_SIDE pixels on a side."""

    reason = "too_large"


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2  # after SOI
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                return None
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def is_jpeg(data: bytes) -> bool:
    """Whether the bytes start as a JPEG does (its start-of-image marker)."""
    return data.startswith(b"\xff\xd8")


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header alone; None when it cannot be read."""
    if is_jpeg(data):
        return _jpeg_size(data)
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    from PIL import Image  # here: capture processes, which never get here, start without it

    try:  # other formats (BMP, WebP, ...): PIL reads the header only
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image is larger than {MAX_SIDE}x{MAX_SIDE} px ({exc})") from None
    except Exception:  # noqa: BLE001 - any failure to parse a hostile header: size unknown
        return None


def check_image(data: bytes, what: str) -> tuple[int, int]:
    """The image's (width, height), after refusing it if it is over either cap.
    FrameError when its size cannot be read (not an image we can check)."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"{what}: image of more than {MAX_IMAGE_BYTES} bytes (the most allowed)")
    try:
        size = image_size(data)
    except ImageTooLarge as exc:
        raise ImageTooLarge(f"{what}: {exc}") from None
    if size is None:
        raise FrameError(f"{what}: corrupt image (no JPEG, PNG or other image header with its size "
                         f"in {len(data)} bytes)")
    w, h = size
    if w > MAX_SIDE or h > MAX_SIDE:
        raise ImageTooLarge(f"{what}: image {w}x{h} px is larger than {MAX_SIDE}x{MAX_SIDE} px")
    return size


def read_image_file(path: Path | str, what: str, *, follow_symlinks: bool = True) -> bytes:
    """The bytes of a regular file of at most MAX_IMAGE_BYTES, read without reading more:
    a bigger (or sparse) file is refused from its size, and one growing while read is cut
    at the cap. O_NONBLOCK: opening a FIFO put in its place does not hang."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_symlinks else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FrameError(f"{what}: not a regular file")
        if info.st_size > MAX_IMAGE_BYTES:
            raise ImageTooLarge(f"{what}: file of {info.st_size} bytes is larger than the "
                                f"{MAX_IMAGE_BYTES} bytes allowed for an image")
        data = fh.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"{what}: file grew past the {MAX_IMAGE_BYTES} bytes allowed for an image")
    return data
