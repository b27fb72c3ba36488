"""Camera sources and taking one fresh frame from each kind.

Kinds: ``rtsp://`` (FFmpeg, TCP transport), ``http(s)://`` (a single-JPEG snapshot URL
or an MJPEG multipart stream, read with the standard library so every socket call has
a deadline), video files (``file://`` or a path; looping by default, ``?loop=0`` plays
once), local devices (``device://N`` or ``/dev/videoN``) and image folders
(``folder://`` or a directory) whose file names carry the capture time, for replaying
stored footage.

Per sample the source is opened, one frame is taken, and it is released
("open-grab-release"): docs/architecture.md explains the measurement behind that
choice; ``ingest.reader`` holds the persistent latest-frame reader it was compared with,
which an RTSP or device camera is switched to when its open takes about its interval
(ingest.sampler).
Credentials come from ``${VAR}`` placeholders filled at capture time; every error
message passes through :func:`bearwatch.redact.redact_text`.

Pictures that arrive encoded (HTTP snapshots, MJPEG parts, image folders) are decoded
once for the frame checks; a JPEG among them is stored byte for byte when every decoder
sees it as the checks did (ingest.jpeg), anything else is encoded by the sampler as the
frames of RTSP, device and video-file sources are.
"""

from __future__ import annotations

import base64
import enum
import logging
import os
import re
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit, urlunsplit

import cv2
import numpy as np

from bearwatch.errors import ConfigError, FrameError
from bearwatch.images import IMAGE_SUFFIXES, MAX_IMAGE_BYTES, ImageRefused, ImageTooLarge, check_image, read_image_file
from bearwatch.redact import redact_text, redact_url
from ingest.capture_pool import CapturePool, ReaderProcess
from ingest.jpeg import reencode_reason
from ingest.opencv_capture import grab_frame, open_device, open_ffmpeg

log = logging.getLogger(__name__)
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# 20260704T221503Z, 2026-07-04_22-15-03, 20260704_221503_120000 ... read as UTC.
_NAME_TIME = re.compile(
    r"(\d{4})-?(\d{2})-?(\d{2})[T_ -]?(\d{2})[-:]?(\d{2})[-:]?(\d{2})(?:[._](\d{1,6}))?"
)


class SourceKind(str, enum.Enum):
    RTSP = "rtsp"
    HTTP = "http"
    FILE = "file"
    DEVICE = "device"
    FOLDER = "folder"


class NoNewFrame(FrameError):
    """An image folder has nothing newer than the last replayed image (not a failure)."""


class OutsideFolder(ImageRefused):
    """An image folder's entry is a symbolic link to something outside the folder."""

    reason = "outside_folder"


def resolve_source(source: str) -> str:
    """Fill ``${VAR}`` placeholders (credentials) from the environment, at capture time."""

    def fill(match: re.Match[str]) -> str:
        value = os.environ.get(match.group(1))
        if value is None:
            raise FrameError(f"source {redact_url(source)} needs environment variable {match.group(1)}, which is not set")
        return value

    return _PLACEHOLDER.sub(fill, source)


def source_kind(source: str) -> SourceKind:
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if scheme in ("rtsp", "rtsps"):
        return SourceKind.RTSP
    if scheme in ("http", "https"):
        return SourceKind.HTTP
    if scheme == "device" or re.fullmatch(r"/dev/video\d+", source):
        return SourceKind.DEVICE
    if scheme == "folder":
        return SourceKind.FOLDER
    if scheme in ("", "file"):
        return SourceKind.FOLDER if Path(_local_path(source)).is_dir() else SourceKind.FILE
    raise FrameError(f"unsupported camera source {redact_url(source)}: use rtsp://, http(s)://, file://, device:// or folder://")


def _local_path(source: str) -> str:
    for prefix in ("file://", "folder://"):
        if source.startswith(prefix):
            return urlsplit(source).path
    return source


@dataclass
class SourceState:
    """What one camera's source remembers between samples (kept by its sampler)."""

    started_monotonic: float = field(default_factory=time.monotonic)
    replayed_until: datetime | None = None  # image folders: the last replayed capture time


@dataclass(frozen=True)
class Captured:
    image: np.ndarray | None  # BGR uint8; None when the source gave an empty frame
    captured_at: datetime
    # The camera's own JPEG, when it is stored as it came (ingest.jpeg: it decodes to
    # ``image`` everywhere); None: the frame store gets ``image`` encoded.
    jpeg: bytes | None = None


def camera_tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """How HTTPS cameras are verified: the system's CAs, plus ``ca_file`` (PEM: a park's
    own CA, or a camera's self-signed certificate) when given. Verification stays on;
    the certificate must name the host in the camera's URL (an IP address SAN for cameras
    reached by IP)."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"BEARWATCH_CAMERA_CA_FILE {ca_file}: not a readable PEM certificate file ({exc})") from None
    return context


def capture(
    source: str, state: SourceState, *, timeout_s: float, now: datetime, pool: CapturePool | None = None,
    tls: ssl.SSLContext | None = None, reader: ReaderProcess | None = None,
) -> Captured:
    """Take one fresh frame from ``source`` within about ``timeout_s`` seconds. RTSP and
    device sources go to the camera's persistent ``reader`` when it has one (a process
    of its own keeping the stream open), else to the capture ``pool`` (child processes
    killed past their deadline) when one is given, else they are opened in this process.

    Raises FrameError (message redacted) when the source cannot give one."""
    url = resolve_source(source)
    kind = source_kind(url)
    try:
        if kind is SourceKind.HTTP:
            return _http_frame(url, timeout_s, now, tls)
        if kind is SourceKind.FOLDER:
            return _folder_frame(Path(_local_path(url)), state)
        if kind is SourceKind.FILE:
            return Captured(_file_frame(url, state), now)
        if (pool is not None or reader is not None) and kind in (SourceKind.RTSP, SourceKind.DEVICE):
            target = re.sub(r"\D", "", url.split("://", 1)[-1]) or "0" if kind is SourceKind.DEVICE else url
            if reader is not None:
                return Captured(reader.capture(kind.value, target, timeout_s, timeout_s + 0.5), now)
            assert pool is not None
            return Captured(pool.capture(kind.value, target, timeout_s, timeout_s + 0.5), now)
        if kind is SourceKind.DEVICE:
            index = int(re.sub(r"\D", "", url.split("://", 1)[-1]) or 0)
            return Captured(grab_frame(open_device(index), source), now)
        return Captured(grab_frame(open_ffmpeg(url, timeout_s), source), now)
    except FrameError as exc:
        raise type(exc)(scrub(str(exc), source)) from None
    except (OSError, cv2.error, ValueError) as exc:
        raise FrameError(scrub(f"{redact_url(source)}: {exc}", source)) from None


def scrub(message: str, source: str) -> str:
    """``message`` with URLs redacted and every credential the source's placeholders
    resolve to masked, wherever it appears (FFmpeg and HTTP errors can echo them)."""
    text = redact_text(message)
    for name in _PLACEHOLDER.findall(source):
        value = os.environ.get(name)
        if value and len(value) >= 3:
            text = text.replace(value, "***")
    return text


def _file_frame(url: str, state: SourceState) -> np.ndarray | None:
    """The frame at the current position of the clip: wall-clock position when looping
    (as a camera pointed at that scene would show now), else time since the first sample."""
    parts = urlsplit(url) if url.startswith("file://") else None
    path = Path(parts.path if parts else url)
    loop = (parse_qs(parts.query).get("loop", ["1"])[0] not in ("0", "false", "no")) if parts else True
    if not path.is_file():
        raise FrameError(f"video file {path} does not exist")
    cap = cv2.VideoCapture(str(path))
    if cap.isOpened():
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = cap.get(cv2.CAP_PROP_FPS) or 5.0
        if count > 0:
            if loop:
                position = int(time.time() * fps) % count
            else:
                position = int((time.monotonic() - state.started_monotonic) * fps)
                if position >= count:
                    cap.release()
                    raise FrameError(f"video file {path} has ended (loop=0)")
            cap.set(cv2.CAP_PROP_POS_FRAMES, position)
    return grab_frame(cap, str(path))


def name_time(name: str) -> datetime | None:
    """The capture time (UTC) written in an image file name, if any."""
    match = _NAME_TIME.search(name)
    if not match:
        return None
    y, mo, d, h, mi, s, frac = match.groups()
    try:
        micro = int((frac or "0").ljust(6, "0"))
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=timezone.utc)
    except ValueError:
        return None


def _folder_frame(folder: Path, state: SourceState) -> Captured:
    """The next image (by the time in its name) after the last one replayed."""
    if not folder.is_dir():
        raise FrameError(f"image folder {folder} does not exist")
    best: tuple[datetime, Path] | None = None
    for entry in os.scandir(folder):
        if not entry.is_file() or Path(entry.name).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        when = name_time(entry.name)
        if when is None or (state.replayed_until is not None and when <= state.replayed_until):
            continue
        if best is None or when < best[0]:
            best = (when, Path(entry.path))
    if best is None:
        raise NoNewFrame(f"image folder {folder}: no image newer than the last one replayed")
    state.replayed_until = best[0]  # a refused image is passed over, not retried
    # Links are followed only within the folder: a camera folder must not read other files.
    target = best[1].resolve()
    if not target.is_relative_to(folder.resolve()):
        raise OutsideFolder(f"{best[1]}: a symbolic link to a file outside the image folder; refused")
    data = read_image_file(target, str(best[1]), follow_symlinks=False)
    return _decode(data, str(best[1]), best[0])


def _decode(data: bytes, what: str, captured_at: datetime) -> Captured:
    """An encoded picture from a camera (snapshot, MJPEG part, folder image), decoded
    once for the frame checks; a JPEG that decodes to the same picture everywhere is
    kept as it came (ingest.jpeg), anything else is re-encoded when stored."""
    if not data:
        return Captured(None, captured_at)
    check_image(data, what)  # byte and pixel caps, from the header, before decoding
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise FrameError(f"{what}: corrupt image ({len(data)} bytes could not be decoded)")
    why = reencode_reason(data, image.shape)
    if why is not None:
        log.debug("%s: stored re-encoded, not as it came: %s", redact_text(what), why)
    return Captured(image, captured_at, data if why is None else None)


def _http_frame(url: str, timeout_s: float, now: datetime, tls: ssl.SSLContext | None = None) -> Captured:
    """A snapshot URL gives one JPEG; an MJPEG stream gives parts, and the first part of
    a fresh connection is the current picture."""
    deadline = time.monotonic() + timeout_s
    parts = urlsplit(url)
    headers = {"User-Agent": "bearwatch-ingest"}
    if parts.username is not None:
        token = f"{parts.username}:{parts.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s, context=tls) as resp:
            ctype = resp.headers.get("Content-Type", "")
            if ctype.startswith("multipart/"):
                match = re.search(r"boundary=\"?([^\";]+)", ctype)
                if not match:
                    raise FrameError("MJPEG stream without a multipart boundary")
                return _decode(_first_part(resp, match.group(1), deadline), "MJPEG part", now)
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_IMAGE_BYTES:  # refused before reading the body
                raise ImageTooLarge(f"snapshot of {declared} bytes is larger than the {MAX_IMAGE_BYTES} bytes allowed")
            return _decode(resp.read(MAX_IMAGE_BYTES + 1), "snapshot", now)  # never more than the cap
    except urllib.error.HTTPError as exc:
        raise FrameError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise FrameError(f"TLS certificate not trusted ({exc.reason.verify_message}); to trust a camera's own "
                             "certificate or CA, give its PEM file in BEARWATCH_CAMERA_CA_FILE") from None
        raise FrameError(f"cannot connect: {exc.reason}") from None
    except TimeoutError:
        raise FrameError(f"no answer within {timeout_s:g}s") from None


class _LineReader(Protocol):
    """What the MJPEG reader needs of http.client.HTTPResponse (its reads honour the socket timeout)."""

    def readline(self, limit: int = -1, /) -> bytes: ...
    def read(self, amt: int | None = None, /) -> bytes: ...


def _part_headers(fp: _LineReader, marker: bytes, deadline: float) -> int | None:
    """Skip to the first boundary, read the part headers; the part's Content-Length, if given."""
    while True:
        if time.monotonic() > deadline:
            raise FrameError("MJPEG stream: no complete part before the deadline")
        line = fp.readline(4096)
        if not line:
            raise FrameError("MJPEG stream ended before a complete part")
        if line.strip() == marker:
            break
    length = None
    while header := fp.readline(4096).strip():
        name, _, value = header.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return length


def _first_part(fp: _LineReader, boundary: str, deadline: float) -> bytes:
    """Read the first complete body of a multipart/x-mixed-replace response."""
    marker = b"--" + boundary.removeprefix("--").encode()
    length = _part_headers(fp, marker, deadline)
    if length is not None:
        if length > MAX_IMAGE_BYTES:
            raise ImageTooLarge(f"MJPEG part of {length} bytes is larger than the {MAX_IMAGE_BYTES} bytes allowed")
        body = fp.read(length)
        if len(body) < length:
            raise FrameError("MJPEG stream ended inside a part")
        return bytes(body)
    part = bytearray()  # appended in place: no copy of the whole part per line
    while time.monotonic() < deadline:
        line = fp.readline(65536)
        if not line or line.strip() == marker:
            return bytes(part.rstrip(b"\r\n"))
        part += line
        if len(part) > MAX_IMAGE_BYTES + 2:  # + the CRLF before the boundary
            raise ImageTooLarge(f"MJPEG part of more than {MAX_IMAGE_BYTES} bytes (the most allowed)")
    raise FrameError("MJPEG part without Content-Length did not end before the deadline")
