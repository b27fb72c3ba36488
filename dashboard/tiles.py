"""HTML for frame tiles (the live wall, latest frames): the frame, outlined in red when
flagged, with a text marker too (a ranger must not need colour alone to see a flag, a
stale or dark camera).

Pages show a tile with st.html (sanitised, then set as it is), not st.markdown: the browser
ran Markdown's parser and raw-HTML plugin (a script bundle of its own, fetched on a page's
first tile) over every tile and its inline JPEG, on every refresh."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import cv2
import numpy as np

from bearwatch.images import image_size, is_jpeg
from bearwatch.localtime import when_html
from dashboard.queries.cameras import CameraState
from dashboard.queries.frames import ScoredFrame
from dashboard.queries.live_wall import WallTile

THUMB_WIDTH = 480
_BORDER = {"flagged": "#d32f2f", "stale": "#f9a825", "dark": "#616161", "disabled": "#9e9e9e", "live": "#c8c8c8"}


# libjpeg scales while it decodes (by 1/2, 1/4, 1/8): far less work than a full decode.
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def thumbnail_b64(path: Path) -> str | None:
    """A JPEG thumbnail of a stored frame, base64; None when the file is missing or unreadable.

    A stored JPEG no wider than THUMB_WIDTH (the demo's 320 px frames, a camera's sub-stream)
    is its own thumbnail: its bytes go as they are, neither decoded nor encoded again (nor
    blurred by a second compression). A wider one is decoded at the smallest libjpeg scale
    still THUMB_WIDTH wide, then resized."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    size = image_size(data) if is_jpeg(data) else None  # the JPEG header alone
    if size is not None and size[0] <= THUMB_WIDTH:
        return base64.b64encode(data).decode("ascii")
    flag = next((f for factor, f in _REDUCED if size is not None and size[0] // factor >= THUMB_WIDTH), cv2.IMREAD_COLOR)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if image is None:
        return None
    height, width = image.shape[:2]
    if width > THUMB_WIDTH:
        image = cv2.resize(image, (THUMB_WIDTH, round(height * THUMB_WIDTH / width)), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return base64.b64encode(jpeg.tobytes()).decode("ascii") if ok else None


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def tile_kind(tile: WallTile) -> str:
    if tile.state is CameraState.LIVE:
        return "flagged" if tile.flagged else "live"
    if tile.flagged and tile.state is CameraState.STALE:
        return "flagged"  # an old flag still matters more than the staleness
    return tile.state.value


_FLAG_MARKER = '<b style="color:#d32f2f">⚠ FLAGGED</b>'


def _framed(kind: str, camera: str, image_b64: str | None, missing: str, caption: str) -> str:
    """One tile: the frame (or why there is none) in a border of ``kind``'s colour, thicker
    for a flag, and its caption."""
    if image_b64:
        body = f'<img src="data:image/jpeg;base64,{image_b64}" style="width:100%;display:block" alt="{html.escape(camera)}"/>'
    else:
        body = f'<div style="aspect-ratio:4/3;display:flex;align-items:center;justify-content:center;background:#222;color:#ddd">{missing}</div>'
    width = 6 if kind == "flagged" else 3
    return (
        f'<div class="bw-tile bw-{kind}" data-camera="{html.escape(camera)}" '
        f'style="border:{width}px solid {_BORDER[kind]};border-radius:6px;padding:2px;margin-bottom:8px">'
        f"{body}<div style='font-size:0.85em;padding:2px 4px'>{caption}</div></div>"
    )


def tile_html(tile: WallTile, image_b64: str | None, zone_name: str | None = None) -> str:
    markers = [_FLAG_MARKER] if tile.flagged else []
    if tile.state is not CameraState.LIVE:
        markers.append(f'<b style="color:{_BORDER[tile.state.value]}">{tile.state.value.upper()}</b>')
    details = [html.escape(tile.camera)]
    if tile.captured_at is not None and tile.age_s is not None:
        details.append(f"{when_html(tile.captured_at, zone_name, seconds=True, date=False)} ({_age(tile.age_s)})")
    if tile.positive_score is not None:
        details.append(f"bear score {tile.positive_score:.2f}")
    elif tile.frame_id is not None:
        details.append("not scored yet")
    missing = "no frame yet" if tile.frame_id is None else "frame file missing"
    return _framed(tile_kind(tile), tile.camera, image_b64, missing, f"{' '.join(markers)} {' · '.join(details)}")


def frame_tile_html(frame: ScoredFrame, image_b64: str | None, zone_name: str | None = None) -> str:
    """A scored frame as the live wall shows one: a flag outlined in red."""
    details = [html.escape(f"{frame.site}/{frame.camera}"), when_html(frame.captured_at, zone_name, seconds=True, date=False),
               html.escape(frame.label), f"bear score {frame.positive_score:.2f}"]
    marker = _FLAG_MARKER if frame.flagged else "not flagged ·"
    return _framed("flagged" if frame.flagged else "live", frame.camera, image_b64, "frame file missing",
                   f"{marker} {' · '.join(details)}")
