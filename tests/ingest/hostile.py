"""Hostile image files, made cheaply: each is small on disk (or sparse) but would cost
gigabytes to anyone who reads it whole or trusts the size in its header."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2

from tests.ingest.helpers import scene

MIB = 1024 * 1024
# The documented limits (docs/configuration.md, Image limits), written out so the tests pin them.
MAX_IMAGE_BYTES = 32 * MIB
MAX_SIDE = 8192


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real 64x64 JPEG whose frame header (SOF0) is patched to claim ``width`` x ``height``:
    a decoder that trusts it allocates the whole picture (30000x30000: 2.7 GB as BGR)."""
    data = bytearray(cv2.imencode(".jpg", scene(1, (64, 64)))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 7] = height.to_bytes(2, "big")
    data[sof + 7:sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG (1-bit grey, every row zero, zlib level 9): about 1/1000 of its raw
    size on disk, and ``width * height * 3`` bytes once a decoder expands it to BGR."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the packed pixels
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row * min(1000, height - y)) for y in range(0, height, 1000)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def sparse_file(path: Path, size: int = 2 * 1024**3) -> None:
    """A ``size``-byte file of zeros that takes no disk space (and no time to make)."""
    with path.open("wb") as fh:
        fh.truncate(size)
