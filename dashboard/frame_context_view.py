"""The Review page's left column: the frame to judge with its context (issue 16 item 3).

- the frame, with a zoom (1× to 4×, on the heat map's peak, the centre or a corner; plain
  selectboxes, so it works from the keyboard too; after a change the focus leaves the
  widget, so the verdict keys work again at once) and a toggle that overlays the heat map
  (where the rollout model looked: the Grad-CAM grid the inference worker stored for a
  flagged frame, upsampled here; the dashboard loads no model);
- the strip of the camera's neighbouring frames, the one under review outlined and marked;
- the camera's bear score over the hour around the frame, with the site's threshold and
  the frame marked.

Reads go through dashboard.queries.frame_context. The page is redrawn on every verdict key,
so the context is cached for a short while per frame, and the images per file and setting
(stored frames never change).
"""

from __future__ import annotations

import base64
import html
from datetime import datetime

import altair as alt
import cv2
import numpy as np
import pandas as pd
import streamlit as st

from bearwatch.localtime import local
from bearwatch.schema import utcnow
from dashboard.context import factory, settings, when, when_hover, zone_of
from dashboard.queries.frame_context import FrameContext, FrameHeatmap, frame_context

ZOOMS = {"1×": 1, "2×": 2, "3×": 3, "4×": 4}
PEAK = "heat map peak"
FOCUS = {"centre": (0.5, 0.5), PEAK: (0.5, 0.5), "top left": (0.25, 0.25), "top right": (0.75, 0.25),
         "bottom left": (0.25, 0.75), "bottom right": (0.75, 0.75)}
STRIP_THUMB_WIDTH = 200
HEAT_ALPHA = 0.6  # the overlay's opacity where the map is strongest; none where it is zero


_BLUR = "review_context_changed"
# After a zoom or heat map change the focus leaves the widget, so the page's verdict keys
# (dashboard.keys ignores keys typed into an input) work again at once.
_BLUR_SCRIPT = """<script>(() => {
  // change %d: a new text each time, so the element is mounted and the script runs again
  const doc = window.parent.document;
  const el = doc.activeElement;
  if (el && el !== doc.body && typeof el.blur === "function") el.blur();
})();</script>"""


def _step(key: str, options: list[str]) -> None:
    """The next option of a selectbox, round: what the z and o keys do (a key cannot pick an
    option of a selectbox, but it can click a button)."""
    current = st.session_state.get(key)
    st.session_state[key] = options[(options.index(current) + 1) % len(options)] if current in options else options[1]


def _changed() -> None:
    st.session_state[_BLUR] = st.session_state.get(_BLUR + "_count", 0) + 1
    st.session_state[_BLUR + "_count"] = st.session_state[_BLUR]


@st.cache_data(ttl=20, max_entries=64, show_spinner=False)
def _context(database_url: str, frame_id: int) -> FrameContext | None:
    with factory()() as session:
        return frame_context(session, frame_id, utcnow())


def heat_grid(heatmap: FrameHeatmap) -> np.ndarray:
    return np.frombuffer(heatmap.cells, dtype=np.uint8).reshape(heatmap.grid_rows, heatmap.grid_cols)


def heat_peak(heatmap: FrameHeatmap) -> tuple[float, float]:
    """The centre of the map's strongest cell, as fractions of the width and height."""
    grid = heat_grid(heatmap)
    row, col = np.unravel_index(int(np.argmax(grid)), grid.shape)
    return (col + 0.5) / grid.shape[1], (row + 0.5) / grid.shape[0]


def overlay(rgb: np.ndarray, heatmap: FrameHeatmap) -> np.ndarray:
    """The frame with the heat map upsampled over it (red where the model looked most)."""
    h, w = rgb.shape[:2]
    heat = cv2.resize(heat_grid(heatmap).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    heat = np.clip(heat, 0, 255).astype(np.uint8)
    colour = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB).astype(np.float32)
    alpha = (heat.astype(np.float32) / 255.0 * HEAT_ALPHA)[..., None]
    return (rgb.astype(np.float32) * (1 - alpha) + colour * alpha).astype(np.uint8)


def zoomed(rgb: np.ndarray, zoom: int, centre: tuple[float, float]) -> np.ndarray:
    """A 1/zoom crop of the frame around ``centre`` (kept inside the frame), scaled back up."""
    if zoom <= 1:
        return rgb
    h, w = rgb.shape[:2]
    cw, ch = max(1, round(w / zoom)), max(1, round(h / zoom))
    x0 = min(max(0, round(centre[0] * w - cw / 2)), w - cw)
    y0 = min(max(0, round(centre[1] * h - ch / 2)), h - ch)
    return cv2.resize(rgb[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_CUBIC)


@st.cache_data(max_entries=32, show_spinner=False)
def _picture(path: str, zoom: int, centre: tuple[float, float], heatmap: FrameHeatmap | None) -> np.ndarray | None:
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if heatmap is not None:
        rgb = overlay(rgb, heatmap)
    return zoomed(rgb, zoom, centre)


@st.cache_data(max_entries=256, show_spinner=False)
def _thumb(path: str) -> str | None:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        return None
    h, w = image.shape[:2]
    if w > STRIP_THUMB_WIDTH:
        image = cv2.resize(image, (STRIP_THUMB_WIDTH, max(1, round(h * STRIP_THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 75])
    return base64.b64encode(jpeg.tobytes()).decode("ascii") if ok else None


def strip_html(ctx: FrameContext) -> str:
    """The neighbouring frames as one row of thumbnails: the frame under review outlined
    in blue and marked in words, flagged ones marked, each with its local time and score."""
    tiles = []
    for n in ctx.neighbours:
        b64 = _thumb(str(settings().frames_dir / n.path))
        picture = (f'<img src="data:image/jpeg;base64,{b64}" style="width:100%;display:block" alt="frame {n.frame_id}"/>'
                   if b64 else '<div style="padding:1.5em 0;text-align:center">file missing</div>')
        border = "3px solid #1565c0" if n.current else "1px solid #c8c8c8"
        marks = (["<b>▶ this frame</b>"] if n.current else []) + (['<b style="color:#d32f2f">⚠ flagged</b>'] if n.flagged else [])
        score = "not scored" if n.score is None else f"score {n.score:.2f}"
        tiles.append(
            f'<div class="bw-strip-frame{" bw-strip-current" if n.current else ""}" '
            f'style="flex:1 1 0;min-width:70px;max-width:{STRIP_THUMB_WIDTH}px;border:{border};padding:2px">'
            f'{picture}<div style="font-size:0.75em;line-height:1.3">{when_hover(n.captured_at, ctx.site, seconds=True)}'
            f'<br/>{html.escape(score)}{"<br/>" + " ".join(marks) if marks else ""}</div></div>'
        )
    return f'<div class="bw-strip" style="display:flex;gap:4px;align-items:flex-start">{"".join(tiles)}</div>'


def _local_naive(moment: datetime, site: str) -> pd.Timestamp:
    return pd.Timestamp(local(moment, zone_of(site)).replace(tzinfo=None))


def score_chart(ctx: FrameContext) -> alt.LayerChart | alt.FacetChart | None:
    """The camera's bear score over the hour, the threshold as a dashed line, the frame as a rule."""
    if not ctx.history:
        return None
    points = pd.DataFrame([{"time": _local_naive(p.captured_at, ctx.site), "bear score": p.score, "flagged": p.flagged}
                           for p in ctx.history])
    y = alt.Y("bear score:Q", scale=alt.Scale(domain=[0, 1]), title="bear score")
    layers: list[alt.Chart] = [
        alt.Chart(points).mark_line(color="#1565c0", point=alt.OverlayMarkDef(size=12)).encode(
            x=alt.X("time:T", title=None), y=y, tooltip=[alt.Tooltip("time:T", format="%H:%M:%S"), "bear score:Q", "flagged:N"]),
    ]
    if ctx.threshold is not None:
        layers.append(alt.Chart(pd.DataFrame([{"threshold": ctx.threshold}])).mark_rule(
            color="#d32f2f", strokeDash=[4, 4]).encode(y="threshold:Q", tooltip=["threshold:Q"]))
    here = pd.DataFrame([{"time": _local_naive(ctx.captured_at, ctx.site), "what": "this frame"}])
    layers.append(alt.Chart(here).mark_rule(color="#e65100", strokeWidth=2).encode(x="time:T", tooltip=["what:N"]))
    return alt.layer(*layers).properties(height=160)


def _notes(ctx: FrameContext | None, heatmap: FrameHeatmap | None, zoom: int, focus: str, show_heat: bool) -> list[str]:
    """What the picture shows, in words, under it."""
    notes = []
    if zoom > 1:
        notes.append(f"zoom {zoom}× on the {focus}")
    if heatmap is None:
        notes.append("no heat map: the rollout model did not flag this frame" if ctx is None or not any(
            n.current and n.flagged for n in ctx.neighbours) else "no heat map stored for this flag")
    elif show_heat:
        notes.append(f"heat map ({heatmap.method}, {heatmap.grid_rows}×{heatmap.grid_cols}): red is where "
                     f"{ctx.model if ctx else 'the model'} looked most")
    return notes


def show_frame_context(frame_id: int, path: str, site: str) -> None:
    """The left column of the Review page for the frame under review."""
    ctx = _context(settings().database_url, frame_id)
    zoom_col, focus_col, heat_col = st.columns([1, 2, 2])
    zoom = ZOOMS[zoom_col.selectbox("Zoom", list(ZOOMS), key="review_zoom", on_change=_changed)]
    focus = focus_col.selectbox("Zoom on", list(FOCUS), key="review_zoom_on", disabled=zoom == 1, on_change=_changed)
    heatmap = ctx.heatmap if ctx is not None else None
    show_heat = heat_col.toggle("Heat map: where the model looked (h)", key="review_heatmap", disabled=heatmap is None,
                                on_change=_changed,
                                help="Grad-CAM of the rollout model, computed by the inference worker for flagged frames")
    # Single keys for the three (bound on the Review page): z zooms in one step (4x -> 1x),
    # o moves what the zoom is centred on, h toggles the heat map.
    zoom_col.button("Zoom (z)", key="review_zoom_step", on_click=_step, args=("review_zoom", list(ZOOMS)),
                    help="1× → 2× → 3× → 4× → 1×")
    focus_col.button("Zoom on next (o)", key="review_zoom_on_step", on_click=_step, args=("review_zoom_on", list(FOCUS)),
                     disabled=zoom == 1)
    changed = st.session_state.pop(_BLUR, 0)
    if changed:
        st.html(_BLUR_SCRIPT % changed, unsafe_allow_javascript=True)
    centre = heat_peak(heatmap) if (focus == PEAK and heatmap is not None) else FOCUS[focus]

    absolute = settings().frames_dir / path
    overlaid = heatmap if show_heat else None
    if not absolute.is_file():
        st.warning(f"frame file missing: {path}")
    elif zoom == 1 and overlaid is None:
        st.image(str(absolute), width="stretch")  # the stored JPEG as it is: nothing decoded or encoded here
    elif (picture := _picture(str(absolute), zoom, centre, overlaid)) is not None:
        st.image(picture, width="stretch")
    else:
        st.warning(f"frame file unreadable: {path}")
    notes = _notes(ctx, heatmap, zoom, focus, show_heat)
    if notes:
        st.caption(" · ".join(notes))
    if ctx is None:
        return

    st.markdown("**The camera's frames around it**")
    if len(ctx.neighbours) > 1:
        st.markdown(strip_html(ctx), unsafe_allow_html=True)
    else:
        st.caption("no other frame of this camera nearby")

    st.markdown(f"**Bear score, {when(ctx.history_from, site, date=False)} to {when(ctx.history_to, site, date=False)}**"
                + (f" · {ctx.model}, threshold {ctx.threshold:.2f}" if ctx.model and ctx.threshold is not None else ""))
    chart = score_chart(ctx)
    if chart is None:
        st.caption("no scores of the rollout model for this camera in that hour" if ctx.model else "the site has no rollout model")
    else:
        st.altair_chart(chart, width="stretch")
        if ctx.history_truncated:
            st.caption(f"the newest {len(ctx.history)} frames of the hour")
