"""Whether a camera's JPEG can be stored as it came, instead of being re-encoded.

Ingest decodes a snapshot once (OpenCV) for the frame checks and statistics; the model
later decodes the stored file with PIL (fastai's load) or torchvision (the tensor path).
The original bytes are stored only when every one of those decoders sees the picture the
checks saw. OpenCV, PIL and torchvision's CPU decoder all use libjpeg-turbo and give the
same pixels (measured: identical for baseline 4:2:0 and 4:4:4, progressive and greyscale
JPEGs, damaged scans included), but they differ where a file asks for more than pixels:

- an EXIF orientation other than 1: OpenCV turns the picture, PIL and torchvision do not
  (the checks would see it upright, the model sideways or upside down);
- 4 components (CMYK/YCCK): OpenCV and PIL convert them differently (1 level apart,
  measured), torchvision gives 4 channels;
- other than 8-bit Huffman baseline/extended/progressive (12-bit, arithmetic, lossless):
  not every reader decodes them;
- no Huffman tables (an abbreviated stream, as MJPEG/AVI1 cameras send): libjpeg-turbo
  fills in the standard ones, other decoders (nvJPEG, viewers) may not.

Those are re-encoded as before (the picture OpenCV decoded, upright, at quality 90). So
is anything whose structure does not check out: bytes after the end-of-image marker
(trailing garbage, a second picture appended), no end-of-image marker (truncated), a
size different from the header's, a broken marker or EXIF block. A truncated JPEG that
OpenCV cannot decode at all never gets here: it is refused ("corrupt image") as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from bearwatch.images import is_jpeg

_SOI, _EOI, _SOS, _DHT = 0xD8, 0xD9, 0xDA, 0xC4
_APP1 = 0xE1
_ORIENTATION_TAG = 0x0112
# Start-of-frame markers: Huffman baseline, extended, progressive (kept) and the rest
# (lossless, hierarchical, arithmetic: re-encoded). Not C4 (DHT), C8 (JPG), CC (DAC).
_SOF_KEPT = {0xC0, 0xC1, 0xC2}
_SOF_OTHER = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# In entropy-coded data 0xFF is followed by 0x00 (stuffing) or a restart marker
# (D0-D7); any other byte after 0xFF is a marker, or a fill byte (0xFF) before one.
# (No "+" on the 0xFF: that pattern makes the search ~15x slower, 0.8 ms a 720p frame.)
_MARKER_IN_SCAN = re.compile(rb"\xff([^\x00\xd0-\xd7])")


def reencode_reason(data: bytes, shape: tuple[int, ...]) -> str | None:
    """None when ``data``, which OpenCV decoded into a picture of ``shape`` (rows,
    columns, ...), can be stored byte for byte; else why it is re-encoded."""
    if not is_jpeg(data):
        return "not a JPEG"
    try:
        return _check(data, shape)
    except (IndexError, ValueError) as exc:  # a length or offset past the end, a bad field
        return f"damaged JPEG structure ({exc})"


@dataclass
class _Header:
    """What the marker segments before the first scan say."""

    size: tuple[int, int] | None = None  # (width, height) from the frame header
    orientation: int | None = None  # from the first EXIF block, as OpenCV reads it
    tables: bool = False  # Huffman tables given
    scan_at: int = 0  # where the first scan's entropy-coded data starts


def _check(data: bytes, shape: tuple[int, ...]) -> str | None:
    header = _read_header(data)
    if isinstance(header, str):
        return header
    if header.size is None:
        return "no frame header before the scan"
    if not header.tables:
        return "no Huffman tables (an abbreviated stream)"
    if header.orientation not in (None, 1):
        return f"EXIF orientation {header.orientation} (OpenCV turns the picture, the model's decoders do not)"
    problem = _scans_problem(data, header.scan_at)
    if problem is not None:
        return problem
    width, height = header.size
    if tuple(shape[:2]) != (height, width):
        return f"decoded {shape[1]}x{shape[0]} px, header says {width}x{height}"
    return None


def _read_header(data: bytes) -> _Header | str:
    """The segments from the start of the image to the first scan; a string says what is wrong."""
    header = _Header()
    i = 2
    while True:
        if data[i] != 0xFF:
            return f"damaged JPEG structure (no marker at byte {i})"
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte before a marker
            i += 1
            continue
        if marker in (_EOI, _SOI, 0x01) or 0xD0 <= marker <= 0xD7:
            return f"damaged JPEG structure (marker {marker:02X} before the scan)"
        end = _segment_end(data, i, marker)
        problem = _take_segment(header, marker, data[i + 4:end])
        if problem is not None:
            return problem
        if marker == _SOS:
            header.scan_at = end
            return header
        i = end


def _segment_end(data: bytes, at: int, marker: int) -> int:
    """Where the segment of the marker at ``at`` (its 0xFF) ends, from its length field."""
    length = int.from_bytes(data[at + 2:at + 4], "big")
    if length < 2 or at + 2 + length > len(data):
        raise ValueError(f"marker {marker:02X} segment runs past the end")
    return at + 2 + length


def _take_segment(header: _Header, marker: int, body: bytes) -> str | None:
    if marker in _SOF_KEPT or marker in _SOF_OTHER:
        if header.size is not None:
            return "more than one frame header"
        if marker in _SOF_OTHER:
            return f"JPEG process SOF{marker - 0xC0} (lossless, hierarchical or arithmetic coding)"
        if body[0] != 8:
            return f"{body[0]}-bit samples"
        if body[5] not in (1, 3):
            return f"{body[5]} colour components (CMYK or YCCK)"
        header.size = int.from_bytes(body[3:5], "big"), int.from_bytes(body[1:3], "big")
    elif marker == _DHT:
        header.tables = True
    elif marker == _APP1 and body.startswith(b"Exif\x00\x00") and header.orientation is None:
        header.orientation = _exif_orientation(body[6:]) or 1
    return None


def _scans_problem(data: bytes, at: int) -> str | None:
    """Walk the entropy-coded data and the segments between the scans (progressive JPEGs)
    up to the end-of-image marker, which must be the file's last two bytes."""
    while True:
        found = _MARKER_IN_SCAN.search(data, at)
        if found is None:
            return "no end-of-image marker (truncated)"
        marker = found.group(1)[0]
        if marker == 0xFF:  # a fill byte: the marker follows
            at = found.start() + 1
            continue
        if marker == _EOI:
            extra = len(data) - found.end()
            return f"{extra} bytes after the end-of-image marker" if extra else None
        if marker in (_SOI, 0x01) or marker in _SOF_KEPT or marker in _SOF_OTHER:
            return f"damaged JPEG structure (marker {marker:02X} inside the scans)"
        at = _segment_end(data, found.end() - 2, marker)


def _exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag of an EXIF block's first IFD (TIFF layout), if it has one."""
    order = tiff[:2]
    if order not in (b"II", b"MM"):
        raise ValueError("EXIF block without a TIFF byte order")
    endian: Literal["little", "big"] = "little" if order == b"II" else "big"

    def number(at: int, width: int) -> int:
        if at + width > len(tiff):
            raise ValueError("EXIF block runs past its segment")
        return int.from_bytes(tiff[at:at + width], endian)

    ifd = number(4, 4)
    for k in range(number(ifd, 2)):
        entry = ifd + 2 + 12 * k
        if number(entry, 2) == _ORIENTATION_TAG:
            return number(entry + 8, 2)  # a SHORT, stored in the first bytes of the value field
    return None
