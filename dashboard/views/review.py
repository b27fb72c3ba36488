"""Review: the ranger's queue (shadow.review_queue), one frame at a time, large, with the
model's label and score, the camera, the time, the site's stage and what the verdict
will do. Confirm / dismiss / bear missed / undo by button or by key (c, d, m, u); next and
previous (n, p) move through the queue without deciding (the position is kept in the
session: the frame shown, else its place); a burst of open flags at one camera is
dismissed in one action after a confirmation (b, then y or x; shadow.bursts), and undo
right after it takes back the whole burst. Reads come from dashboard.queries; the verdict
functions (shadow.verdicts, shadow.bursts) check the role and apply the stage rules."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from bearwatch.db import write_transaction
from bearwatch.errors import BearwatchError
from bearwatch.schema import Role, Verdict, utcnow
from bearwatch.users import set_preference
from dashboard.context import factory, page_actor, settings, site_names_cached, when, when_hover
from dashboard.frame_context_view import show_frame_context
from dashboard.keys import bind_keys
from dashboard.queries.bursts import BURST_WINDOW, burst_of
from dashboard.queries.review import SITE_PREFERENCE, remembered_site, review_queue_page, review_queue_waiting
from shadow.alert_rules import EFFECT_TEXT
from shadow.bursts import BurstResult, dismiss_burst, undo_burst
from shadow.review_queue import QueueReason
from shadow.verdicts import UNDO_WINDOW_S, submit_verdict, undo_last_verdict

FLASH = "review_flash"
ALL_SITES = "all sites"
AT = "review_at"  # the frame id on screen (None: the one at AT_INDEX)
AT_INDEX = "review_index"  # its place in the queue
LAST_SIZE = "review_last_size"  # (site, the queue-size caption) of the last run, shown while the new one is read
ARMED = "review_burst_armed"  # (frame id, the burst's frame ids) awaiting the ranger's yes
LAST_BURST = "review_last_burst"  # the burst dismiss undo would take back
KEY_LEGEND = ("Keys: **c** confirm · **d** dismiss · **m** missed · **u** undo · **n** next · **p** previous · "
              "**b** dismiss the burst, then **y** yes / **x** cancel · **z** zoom · **o** zoom on next · "
              "**h** heat map · **t** dark theme")
# Large targets for gloves and tired eyes: the verdict buttons are big.
BIG_BUTTONS = """<style>
.st-key-review_confirm button, .st-key-review_dismiss button, .st-key-review_missed button,
.st-key-review_burst button, .st-key-review_burst_yes button {
  min-height: 3.6rem; font-size: 1.25rem; font-weight: 600; }
.st-key-review_undo button, .st-key-review_prev button, .st-key-review_next button,
.st-key-review_burst_no button { min-height: 3rem; font-size: 1.1rem; }
</style>"""

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
        st.session_state[AT] = None  # the frame leaves the queue: the next one takes its place
        st.session_state.pop(LAST_BURST, None)


def _undo() -> None:
    burst: BurstResult | None = st.session_state.pop(LAST_BURST, None)
    try:
        if burst is not None:  # right after a burst dismiss: the whole burst
            undone = undo_burst(factory(), actor, burst, utcnow())
            st.session_state[FLASH] = ("info", f"undone: the burst dismiss of {undone} frame(s); their alerts are held again")
            st.session_state[AT] = burst.dismissed[-1]
            return
        result = undo_last_verdict(factory(), actor, utcnow())
    except BearwatchError as exc:
        st.session_state[FLASH] = ("error", str(exc))
    else:
        st.session_state[FLASH] = ("info", f"undone: frame {result.frame_id} '{result.verdict.value}' ({result.reverted})")
        st.session_state[AT] = result.frame_id  # back on screen: the frame just undone


def _move(frame_id: int, index: int) -> None:
    st.session_state[AT], st.session_state[AT_INDEX] = frame_id, index
    st.session_state.pop(ARMED, None)


def _arm(frame_id: int, frame_ids: tuple[int, ...]) -> None:
    st.session_state[ARMED] = (frame_id, frame_ids)


def _disarm() -> None:
    st.session_state.pop(ARMED, None)


def _dismiss_burst() -> None:
    armed = st.session_state.pop(ARMED, None)
    if armed is None:
        return
    frame_id, frame_ids = armed
    try:
        result = dismiss_burst(factory(), frame_id, frame_ids, actor, utcnow())
    except BearwatchError as exc:
        st.session_state[FLASH] = ("error", str(exc))
        return
    held = f"; held alert(s) {', '.join(map(str, result.suppressed_alerts))} suppressed" if result.suppressed_alerts else ""
    skipped = f"; {len(result.skipped)} were decided meanwhile and left as they are" if result.skipped else ""
    st.session_state[FLASH] = ("success", f"dismissed {len(result.dismissed)} frame(s), one verdict each{held}{skipped} "
                                          "(u undoes the whole burst)")
    st.session_state[LAST_BURST] = result
    st.session_state[AT] = None



def _remember_site() -> None:
    st.session_state[AT], st.session_state[AT_INDEX] = None, 0  # a new queue starts at its head
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
site_filter = None if site == ALL_SITES else site
with factory()() as session:
    queue = review_queue_page(session, actor, now, site=site_filter)

flash = st.session_state.pop(FLASH, None)
if flash:
    getattr(st, flash[0])(flash[1])

if not queue:
    st.success("Nothing to review: the queue is empty.")
    st.button("Undo my last verdict (u)", key="review_undo", on_click=_undo, help=f"within {UNDO_WINDOW_S:g} s")
    bind_keys({"u": "review_undo"})
    st.stop()

# The position: the frame on screen if it is still in the queue, else the one now in its place.
ids = [i.frame_id for i in queue]
at = st.session_state.get(AT)
index = ids.index(at) if at in ids else min(int(st.session_state.get(AT_INDEX, 0)), len(queue) - 1)
st.session_state[AT], st.session_state[AT_INDEX] = ids[index], index
item = queue[index]
st.html(BIG_BUTTONS)
pending = sum(1 for i in queue if i.reason is QueueReason.PENDING_ALERT)
held = f" · {pending} held alert(s) waiting" if pending else ""
# The queue's size is read last (at a season's size it costs more than the page): until
# then the slot shows the last count, which this verdict changed by one at most.
size_slot = st.empty()
last_site, last_text = st.session_state.get(LAST_SIZE, (None, ""))
size_slot.caption(last_text if last_site == site else "counting the queue…")

left, right = st.columns([3, 1])
with left:  # the frame with zoom and heat map, its neighbours, the camera's score (dashboard.frame_context_view)
    show_frame_context(item.frame_id, item.path, item.site)
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
    prev, nxt = st.columns(2)
    prev.button("◀ Previous (p)", key="review_prev", width="stretch", disabled=index == 0,
                on_click=_move, args=(ids[max(index - 1, 0)], max(index - 1, 0)))
    nxt.button("Next (n) ▶", key="review_next", width="stretch", disabled=index >= len(queue) - 1,
               on_click=_move, args=(ids[min(index + 1, len(ids) - 1)], min(index + 1, len(ids) - 1)))
    st.caption(f"frame {index + 1} of the {len(queue)} shown; next and previous decide nothing")
    if flagged:
        with factory()() as session:
            burst = burst_of(session, item.frame_id)
        armed = st.session_state.get(ARMED)
        minutes = f"{BURST_WINDOW.total_seconds() / 60:g} min"
        if armed is not None and armed[0] == item.frame_id:
            count = len(armed[1])
            st.warning(f"Dismiss all {count} open flags of {item.camera} within {minutes} of this frame, one verdict each? "
                       "Held alerts among them are suppressed, as a single dismiss would.")
            new = len(set(burst.frame_ids) - set(armed[1]))
            if new:
                st.caption(f"{new} new flag(s) arrived since you asked: they stay in the queue")
            st.button(f"Yes, dismiss all {count} (y)", key="review_burst_yes", type="primary", width="stretch",
                      on_click=_dismiss_burst)
            st.button("Cancel (x)", key="review_burst_no", width="stretch", on_click=_disarm)
        elif burst.others and item.frame_id in burst.frame_ids:
            st.caption(f"This camera has {burst.others} more open flag(s) within {minutes} of this frame")
            st.button(f"Dismiss all {len(burst.frame_ids)} (b)", key="review_burst", width="stretch",
                      on_click=_arm, args=(item.frame_id, burst.frame_ids),
                      help="asks first; frames another ranger judged stay in the queue")
    st.caption(KEY_LEGEND)
bind_keys({"c": "review_confirm", "d": "review_dismiss", "m": "review_missed", "u": "review_undo",
           "n": "review_next", "p": "review_prev", "b": "review_burst", "y": "review_burst_yes", "x": "review_burst_no",
           "z": "review_zoom_step", "o": "review_zoom_on_step", "h": "review_heatmap"})

rest = queue[index + 1:]
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

with factory()() as session:
    waiting = review_queue_waiting(session, actor, now, site=site_filter)
size_text = f"{waiting} in the queue" + held + (f" · the next {len(queue)} below" if waiting.exceeds(len(queue)) else "")
size_slot.caption(size_text)
st.session_state[LAST_SIZE] = (site, size_text)
