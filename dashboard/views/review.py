"""Review: the ranger's queue (shadow.review_queue), one frame at a time, large, with the
model's label and score, the camera, the time, the site's stage and what the verdict
will do. Confirm / dismiss / bear missed / undo by button or by key (c, d, m, u).
Reads come from dashboard.queries.review; the verdict functions (shadow.verdicts) check
the role and apply the stage rules."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from bearwatch.db import write_transaction
from bearwatch.errors import BearwatchError
from bearwatch.schema import Role, Verdict, utcnow
from bearwatch.users import set_preference
from dashboard.context import factory, page_actor, settings, site_names_cached, when, when_hover
from dashboard.keys import bind_keys
from dashboard.queries.review import SITE_PREFERENCE, remembered_site, review_queue_page
from shadow.alert_rules import EFFECT_TEXT
from shadow.review_queue import QueueReason
from shadow.verdicts import UNDO_WINDOW_S, submit_verdict, undo_last_verdict

FLASH = "review_flash"
ALL_SITES = "all sites"

actor = page_actor(Role.RANGER)


def waited(since: datetime, now: datetime) -> str:
    s = max(0, int((now - since).total_seconds()))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _decide(frame_id: int, verdict: Verdict) -> None:
    try:
        result = submit_verdict(factory(), frame_id, actor, verdict, utcnow())
    except BearwatchError as exc:
        st.session_state[FLASH] = ("error", str(exc))
    else:
        st.session_state[FLASH] = ("success", f"frame {frame_id}: {verdict.value} — {EFFECT_TEXT[result.effect]} (u to undo)")


def _undo() -> None:
    try:
        result = undo_last_verdict(factory(), actor, utcnow())
    except BearwatchError as exc:
        st.session_state[FLASH] = ("error", str(exc))
    else:
        st.session_state[FLASH] = ("info", f"undone: frame {result.frame_id} '{result.verdict.value}' ({result.reverted})")



def _remember_site() -> None:
    with write_transaction(factory()) as session:
        set_preference(session, actor.name, SITE_PREFERENCE, st.session_state["review_site"])


st.title("Review")
site_options = [ALL_SITES, *site_names_cached(settings().database_url)]
if "review_site" not in st.session_state:  # first open in this session: the user's last choice
    with factory()() as session:
        remembered = remembered_site(session, actor.name)
    st.session_state["review_site"] = remembered if remembered in site_options else ALL_SITES
site = st.selectbox("Site", site_options, key="review_site", on_change=_remember_site)
now = utcnow()
# Not cached: the queue must drop a frame the moment it is decided.
with factory()() as session:
    page = review_queue_page(session, actor, now, site=None if site == ALL_SITES else site)
queue, waiting = page.items, page.waiting

flash = st.session_state.pop(FLASH, None)
if flash:
    getattr(st, flash[0])(flash[1])

if not queue:
    st.success("Nothing to review: the queue is empty.")
    st.button("Undo my last verdict (u)", key="review_undo", on_click=_undo, help=f"within {UNDO_WINDOW_S:g} s")
    bind_keys({"u": "review_undo"})
    st.stop()

item = queue[0]
pending = sum(1 for i in queue if i.reason is QueueReason.PENDING_ALERT)
st.caption(f"{waiting} in the queue" + (f" · {pending} held alert(s) waiting" if pending else "")
           + (f" · the next {len(queue)} below" if waiting > len(queue) else ""))

left, right = st.columns([3, 1])
with left:
    path = settings().frames_dir / item.path
    if path.is_file():
        st.image(str(path), width="stretch")
    else:
        st.warning(f"frame file missing: {item.path}")
with right:
    label = item.model_label or "no prediction"
    score = "—" if item.model_score is None else f"{item.model_score:.2f}"
    st.markdown(f"**{item.site} / {item.camera}**  \n{when_hover(item.captured_at, item.site, seconds=True)}", unsafe_allow_html=True)
    st.markdown(f"model: **{label}**, bear score **{score}**")
    st.markdown(f"site stage: **{item.stage.value}** · {item.reason.value.replace('_', ' ')}")
    if item.reason is QueueReason.PENDING_ALERT:
        if item.escalated_at is not None:
            escalation = f" · nobody decided in time: sent to the alert channels unverified {waited(item.escalated_at, now)} ago"
        elif item.escalates_at is not None:
            escalation = f" · goes out unverified in {waited(now, item.escalates_at)} unless you decide"
        else:
            escalation = ""
        st.warning(f"held alert {item.alert_id}: waiting {waited(item.pending_since, now)}{escalation}")
    st.info(item.on_confirm)
    if item.reason is QueueReason.SECOND_LOOK:
        st.caption("second look: another ranger's verdict on this frame went against the model or against a "
                   "colleague; yours settles it (theirs is not shown, so you judge it fresh)")
    flagged = item.flagged
    st.button("Confirm bear (c)", key="review_confirm", type="primary", width="stretch", disabled=not flagged,
              on_click=_decide, args=(item.frame_id, Verdict.CONFIRM))
    st.button("Dismiss (d)", key="review_dismiss", width="stretch", on_click=_decide, args=(item.frame_id, Verdict.DISMISS))
    st.button("Bear missed (m)", key="review_missed", width="stretch", disabled=flagged,
              on_click=_decide, args=(item.frame_id, Verdict.MISSED))
    st.button("Undo my last verdict (u)", key="review_undo", width="stretch", on_click=_undo,
              help=f"within {UNDO_WINDOW_S:g} s, unless its alert has already gone out")
bind_keys({"c": "review_confirm", "d": "review_dismiss", "m": "review_missed", "u": "review_undo"})

rest = queue[1:]
if rest:
    st.subheader("Next in the queue")
    st.dataframe(
        [
            {"site": i.site, "camera": i.camera, "captured": when(i.captured_at, i.site, seconds=True), "why": i.reason.value.replace("_", " "),
             "score": i.model_score, "waiting": waited(i.pending_since, now) if i.reason is QueueReason.PENDING_ALERT else ""}
            for i in rest
        ],
        hide_index=True, width="stretch",
    )
