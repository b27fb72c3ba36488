"""History: reviewed and unreviewed frames by site, camera, date range (the site's local
days, as the pages show times), score band, verdict and model label, newest first, a
page at a time (dashboard.queries.history: keyset pages of bounded work). Choosing a row
opens that frame for a verdict (shadow.verdicts.submit_verdict, the same rules as the
Review page)."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from bearwatch.errors import BearwatchError
from bearwatch.localtime import local
from bearwatch.schema import Role, Verdict, utcnow
from dashboard.context import (
    factory,
    page_actor,
    settings,
    site_names_cached,
    thumbnail_cached,
    when,
    when_hover,
    zone_of,
)
from dashboard.queries.history import (
    Cursor,
    HistoryFilter,
    HistoryPage,
    HistoryRow,
    VerdictFilter,
    cameras_of,
    day_bounds,
    history_page,
    label_options,
)
from shadow.alert_rules import EFFECT_TEXT
from shadow.verdicts import submit_verdict

ALL = "all"
PAGES = "history_pages"  # the cursors of the pages before this one (keyset paging)
FILTER = "history_filter"  # the filter those cursors belong to
FLASH = "history_flash"

actor = page_actor(Role.RANGER)


def _verdict_text(row: HistoryRow) -> str:
    return "; ".join(f"{v.verdict.value} by {v.reviewer} at {when(v.decided_at, row.site)}" for v in row.verdicts)


def _decide(frame_id: int, verdict: Verdict) -> None:
    try:
        result = submit_verdict(factory(), frame_id, actor, verdict, utcnow())
    except BearwatchError as exc:
        st.session_state[FLASH] = ("error", str(exc))
    else:
        st.session_state[FLASH] = ("success", f"frame {frame_id}: {verdict.value} — {EFFECT_TEXT[result.effect]}")


def _older(cursor: Cursor) -> None:
    st.session_state[PAGES] = [*st.session_state.get(PAGES, []), cursor]


def _newer() -> None:
    st.session_state[PAGES] = st.session_state.get(PAGES, [])[:-1]


st.title("History")
url = settings().database_url
top = st.columns(3)
site_choice = top[0].selectbox("Site", [ALL, *site_names_cached(url)], key="history_site")
site = None if site_choice == ALL else str(site_choice)
camera_id: int | None = None
if site is not None:
    with factory()() as session:
        cams = cameras_of(session, site)
    names = {name: cid for cid, name in cams}
    camera_choice = top[1].selectbox("Camera", [ALL, *names], key="history_camera")
    camera_id = None if camera_choice == ALL else names[str(camera_choice)]
else:
    top[1].selectbox("Camera", [ALL], key="history_camera_all", disabled=True, help="choose a site first")
zone_name = zone_of(site)
today = local(utcnow(), zone_name).date()
days = top[2].date_input(f"Days ({zone_name})", value=(today - timedelta(days=6), today), max_value=today,
                         key="history_days", format="YYYY-MM-DD")
second = st.columns(3)
band = second[0].slider("Bear score", 0.0, 1.0, (0.0, 1.0), step=0.05, key="history_band")
verdict = second[1].selectbox("Verdict", [v.value for v in VerdictFilter], key="history_verdict")
with factory()() as session:
    labels = label_options(session, site)
label_choice = second[2].selectbox("Model label", [ALL, *labels], key="history_label")

start = end = None
if isinstance(days, tuple) and len(days) == 2:
    start, end = day_bounds(days[0], days[1], zone_name)
elif isinstance(days, tuple) and len(days) == 1:  # the second day not picked yet: that one day
    start, end = day_bounds(days[0], days[0], zone_name)
lo, hi = band
flt = HistoryFilter(
    site=site, camera_id=camera_id, start=start, end=end,
    score_min=None if lo <= 0.0 else float(lo), score_max=None if hi >= 1.0 else float(hi),
    verdict=VerdictFilter(verdict), label=None if label_choice == ALL else str(label_choice),
)
if st.session_state.get(FILTER) != flt:  # a new filter starts at the newest page
    st.session_state[FILTER] = flt
    st.session_state[PAGES] = []
cursors: list[Cursor] = st.session_state.get(PAGES, [])

flash = st.session_state.pop(FLASH, None)
if flash:
    getattr(st, flash[0])(flash[1])

with factory()() as session:
    page: HistoryPage = history_page(session, flt, after=cursors[-1] if cursors else None)

shown = f"page {len(cursors) + 1}: {len(page.rows)} frame(s)"
if page.next is not None and page.scanned is not None:
    shown += f"; searched back to {when(page.searched_to, site)}, there is more before that"
elif page.next is None:
    shown += "; nothing older matches"
st.caption(shown)
if page.rows:
    st.dataframe(
        [
            {"frame": (f"data:image/jpeg;base64,{thumb}" if (thumb := thumbnail_cached(r.path)) else None),
             "captured": when(r.captured_at, r.site, seconds=True), "site": r.site, "camera": r.camera,
             "label": r.label or "", "score": r.score, "flagged": r.flagged,
             "verdict": _verdict_text(r) or "unreviewed", "id": r.frame_id}
            for r in page.rows
        ],
        column_config={"frame": st.column_config.ImageColumn("frame", width="small"),
                       "score": st.column_config.NumberColumn("score", format="%.2f")},
        hide_index=True, width="stretch", row_height=60,
    )
else:
    st.info("No frames match on this page." + (" Look further back with Older." if page.next else ""))
nav = st.columns([1, 1, 4])
nav[0].button("Newer", key="history_newer", disabled=not cursors, on_click=_newer, width="stretch")
nav[1].button("Older", key="history_older", disabled=page.next is None, width="stretch",
              on_click=_older, args=(page.next,) if page.next is not None else ())

if page.rows:
    by_id = {r.frame_id: r for r in page.rows}
    chosen = st.selectbox(
        "Open a frame for a verdict", [None, *by_id], key="history_open",
        format_func=lambda fid: "—" if fid is None else
        f"{by_id[fid].site} / {by_id[fid].camera} · {when(by_id[fid].captured_at, by_id[fid].site, seconds=True)} · frame {fid}",
    )
    if chosen is not None:
        row = by_id[int(chosen)]
        image, side = st.columns([3, 1])
        path = settings().frames_dir / row.path
        if path.is_file():
            image.image(str(path), width="stretch")
        else:
            image.warning(f"frame file missing: {row.path}")
        side.markdown(f"**{row.site} / {row.camera}**  \n{when_hover(row.captured_at, row.site, seconds=True)}",
                      unsafe_allow_html=True)
        score = "—" if row.score is None else f"{row.score:.2f}"
        side.markdown(f"model: **{row.label or 'no prediction'}**, bear score **{score}**")
        side.caption(_verdict_text(row) or "nobody has judged this frame yet")
        side.button("Confirm bear", key="history_confirm", type="primary", width="stretch", disabled=not row.flagged,
                    on_click=_decide, args=(row.frame_id, Verdict.CONFIRM))
        side.button("Dismiss", key="history_dismiss", width="stretch", on_click=_decide, args=(row.frame_id, Verdict.DISMISS))
        side.button("Bear missed", key="history_missed", width="stretch", disabled=row.flagged,
                    on_click=_decide, args=(row.frame_id, Verdict.MISSED))
