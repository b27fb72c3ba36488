"""Rollout: every site's stage, time in stage and trial window; a site's next gate; promote and
demote with a reason (shadow.promotion checks the role: ops, admins may override a
gate); the ledger. Rangers see it read-only (the services refuse them)."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from bearwatch.db import write_transaction
from bearwatch.errors import BearwatchError, GateNotPassed, InvalidTransition
from bearwatch.schema import Role, Stage, utcnow
from dashboard.context import factory, page_actor, settings, when
from dashboard.queries.rollout import SiteRollout, check_rows, ledger_rows, site_gate, site_rollouts
from shadow.gates import GateOutcome, GateResult
from shadow.promotion import LedgerRow, TrialScope, demote, parse_hours, promote

FLASH = "rollout_flash"
SHOWN = "rollout_shown_stage"  # per site, the stage the last run of this page showed
MARK = {GateOutcome.PASS: "✓ pass", GateOutcome.FAIL: "✗ fail", GateOutcome.INCONCLUSIVE: "? inconclusive"}  # glyphs every font has

actor = page_actor(Role.RANGER)


@st.cache_data(ttl=30, show_spinner=False)
def _rollouts(database_url: str) -> tuple[SiteRollout, ...]:
    with factory()() as session:
        return site_rollouts(session, utcnow())


@st.cache_data(ttl=30, show_spinner=False)
def _gate(database_url: str, site: str) -> GateResult | None:
    with factory()() as session:
        return site_gate(session, site, utcnow())


@st.cache_data(ttl=30, show_spinner=False)
def _ledger(database_url: str) -> list[LedgerRow]:
    with factory()() as session:
        return ledger_rows(session, limit=200)


def _age(since: datetime, now: datetime) -> str:
    d = now - since
    return f"{d.days} d {d.seconds // 3600} h" if d.days else f"{d.seconds // 3600} h {d.seconds % 3600 // 60} min"


def _evidence_text(e: dict) -> str:
    gate = e.get("gate") if isinstance(e.get("gate"), dict) else e if "outcome" in e else None
    if gate:
        return f"gate {gate.get('gate', '')}: {gate.get('outcome')}" + (" (OVERRIDE)" if e.get("override") else "")
    if e.get("demotion"):
        return f"demotion from {e.get('from')}"
    if isinstance(e.get("restart"), dict):
        return f"new rollout model (id {e['restart'].get('model_version_id')}): shadow starts again"
    return ", ".join(sorted(e)) or "—"


def _changed(message: str, kind: str = "success") -> None:
    _rollouts.clear()
    _gate.clear()
    _ledger.clear()
    st.session_state[FLASH] = (kind, message)
    st.rerun()


def _promote_form(chosen: SiteRollout, g: GateResult, looked_at: Stage) -> None:
    with st.form("promote_form"):
        st.markdown(f"**Promote to {g.to_stage.value}**")
        reason = st.text_input("Reason", key="promote_reason")
        cameras: list[str] = []
        hours = ""
        if g.to_stage is Stage.LIMITED:
            cameras = st.multiselect("Trial cameras (none: all)", list(chosen.cameras), key="promote_cameras")
            hours = st.text_input("Trial hours, in UTC (e.g. 20-6; empty: all)", key="promote_hours")
        override = st.checkbox("Override the gate (admins, with a reason)", key="promote_override") if actor.may(Role.ADMIN) else False
        if st.form_submit_button("Promote", type="primary"):
            try:
                scope = TrialScope(tuple(cameras), parse_hours(hours)) if g.to_stage is Stage.LIMITED else None
                with write_transaction(factory()) as session:
                    change = promote(session, chosen.site, actor, reason, utcnow(), override=override, scope=scope,
                                     expected_stage=looked_at)
                    to_stage = change.to_stage
            except GateNotPassed as exc:
                st.error(str(exc))
                for line in exc.lines:
                    st.markdown(f"- {line}")
            except InvalidTransition as exc:  # e.g. changed since the user looked: show it fresh
                _changed(str(exc), "error")
            except BearwatchError as exc:
                st.error(str(exc))
            else:
                _changed(f"{chosen.site} promoted to {to_stage.value}")


def _demote_form(chosen: SiteRollout, lower: list[Stage]) -> None:
    with st.form("demote_form"):
        st.markdown("**Demote**")
        to = st.selectbox("To stage", [s.value for s in lower], key="demote_to")
        reason = st.text_input("Reason", key="demote_reason")
        if st.form_submit_button("Demote"):
            try:
                with write_transaction(factory()) as session:
                    demote(session, chosen.site, Stage(to), actor, reason, utcnow())
            except BearwatchError as exc:
                st.error(str(exc))
            else:
                _changed(f"{chosen.site} demoted to {to}")


st.title("Rollout")
url = settings().database_url
now = utcnow()
sites = _rollouts(url)
flash = st.session_state.pop(FLASH, None)
if flash:
    getattr(st, flash[0])(flash[1])
if not sites:
    st.info("No sites yet: `bearwatch site add` or a park file creates them.")
    st.stop()
if not actor.may(Role.OPS):
    st.caption("Read-only for rangers: ops promote and demote sites.")

st.dataframe(
    [
        {"site": s.site, "stage": s.stage.value, "in stage": _age(s.stage_since, now), "model": s.model or "—",
         "trial window": f"{when(s.trial_start, s.site)} → {when(s.trial_end, s.site)}" if s.trial_start and s.trial_end else "",
         "trial scope": s.trial_scope}
        for s in sites
    ],
    hide_index=True, width="stretch",
)

by_name = {s.site: s for s in sites}
chosen = by_name[st.selectbox("Site", list(by_name), key="rollout_site")]
st.subheader(f"{chosen.site}: {chosen.stage.value}")
gate = _gate(url, chosen.site)
if gate is None:
    st.caption("Expanded is the last stage: no gate out of it.")
else:
    g = gate
    # A click reruns this script on fresh data: the promotion must name the stage the user
    # looked at (the previous run's), so a change by someone else in between refuses it.
    shown: dict[str, Stage] = st.session_state.setdefault(SHOWN, {})
    looked_at = shown.get(chosen.site, g.from_stage)
    shown[chosen.site] = g.from_stage
    st.markdown(f"Gate **{g.from_stage.value} → {g.to_stage.value}**: {MARK[g.outcome]}")
    checks = check_rows(g)
    st.dataframe(
        [
            {"check": c.check, "result": MARK[c.outcome], "value [95% bounds]": c.shown, "needs": c.needs,
             "unit": c.unit, "plan": c.plan, "detail": c.detail, "method": c.method}
            for c in checks
        ],
        hide_index=True, width="stretch",
    )
    planned = [c for c in checks if c.plan]
    if planned:
        with st.expander("What would decide the inconclusive checks", expanded=g.outcome is GateOutcome.INCONCLUSIVE):
            st.markdown("\n".join(f"- **{c.check}** ({c.unit}): {c.plan}" for c in planned))
            st.caption("At the rates seen so far in the window; the audit rate applies to every stratum of the audit "
                       "design, and the audited frames per day are the rangers' extra review workload.")
    if actor.may(Role.OPS):
        _promote_form(chosen, g, looked_at)

lower = [s for s in (Stage.LIMITED, Stage.MANUAL) if list(Stage).index(s) < list(Stage).index(chosen.stage)]
if lower and actor.may(Role.OPS):
    _demote_form(chosen, lower)

st.subheader("Ledger")
rows = _ledger(url)
st.dataframe(
    [
        {"when": when(r.changed_at, r.site, seconds=True), "site": r.site, "from": r.from_stage.value if r.from_stage else "—",
         "to": r.to_stage.value, "who": r.actor, "model": r.model_version_id, "reason": r.reason,
         "evidence": _evidence_text(r.evidence)}
        for r in rows
    ],
    hide_index=True, width="stretch",
)
with st.expander("Evidence of a ledger row"):
    if rows:
        idx = st.number_input("Row (0 = newest)", min_value=0, max_value=len(rows) - 1, value=0, key="ledger_row")
        st.json(rows[int(idx)].evidence)
