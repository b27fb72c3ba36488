"""Models: registered versions, their roles, thresholds, classes and the sites that roll
each out. Admins can change a model's role or threshold."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import streamlit as st

from bearwatch.db import write_transaction
from bearwatch.errors import BearwatchError
from bearwatch.schema import ModelRole, Role, utcnow
from dashboard.context import factory, page_actor, settings, when
from dashboard.queries.agreement import AgreementRow, ReportFile, backtest_reports, model_agreement
from dashboard.queries.models import ModelRow, models_overview
from inference.model_versions import set_model_role
from shadow.sightings import Estimate
from shadow.sites import set_model_threshold

AGREEMENT_DAYS = 30

actor = page_actor(Role.OPS)


@st.cache_data(ttl=10, show_spinner=False)
def _models(database_url: str) -> tuple[ModelRow, ...]:
    with factory()() as session:
        return models_overview(session)


@st.cache_data(ttl=60, show_spinner=False)
def _agreement(database_url: str) -> tuple[AgreementRow, ...]:
    now = utcnow()
    with factory()() as session:
        return model_agreement(session, now - timedelta(days=AGREEMENT_DAYS), now + timedelta(seconds=1))


@st.cache_data(ttl=10, show_spinner=False)
def _reports(reports_dir: str) -> tuple[ReportFile, ...]:
    return backtest_reports(Path(reports_dir))


def _num(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _bounds(e: Estimate) -> str:
    return "—" if e.n == 0 else f"{e.low:.3f} – {e.high:.3f}"


def _model(a: AgreementRow) -> str:
    return a.model + (" (rollout)" if a.is_rollout else "")


def agreement_section() -> None:
    st.subheader(f"Agreement with the rangers (last {AGREEMENT_DAYS} days)")
    rows = _agreement(settings().database_url)
    if not rows:
        st.caption("No reviewed frames with predictions yet.")
        return
    st.markdown("**Sightings** (the unit of the rollout decisions: a run of bear frames on one camera within the "
                "alert cooldown, as alerts count bears)")
    st.caption("Per site, each model version scored there: the rollout model and any challenger in shadow. Sighting "
               "recall is the share of bear sightings the model alerted on, estimated over the audit design; alert "
               "precision the share of its reviewed alerts that were bears. Bounds are 95% anytime-valid (valid "
               "however often they are looked at, as the gates read them). Missed sightings found by the audit feed "
               "the estimate; those rangers reported on their own are real misses (they cap the recall), not a sample.")
    with_sightings = [a for a in rows if a.sightings is not None]
    st.dataframe(
        [
            {"site": a.site, "model": _model(a),
             "sighting recall": _num(s.recall.value), "recall 95% bounds": _bounds(s.recall),
             "alert precision": _num(s.precision.value), "precision 95% bounds": _bounds(s.precision),
             "caught sightings": s.caught, "missed sightings (found by audit)": s.misses_found,
             "missed sightings (reported)": s.misses_reported,
             "recall at most": "—" if s.recall_ceiling is None else f"{s.recall_ceiling:.3f}",
             "alerts": s.alerts, "bear alerts": s.bear_alerts, "false alerts": s.false_alerts,
             "unreviewed alerts": s.unreviewed_alerts, "audited frames": s.audited_frames}
            for a in with_sightings if (s := a.sightings) is not None
        ],
        hide_index=True, width="stretch",
    )
    methods = sorted({m for a in with_sightings if a.sightings for m in (a.sightings.recall.method, a.sightings.precision.method)})
    if methods:
        st.caption("Method: " + "; ".join(methods) + ".")
    derived = sum(a.sightings.derived_design for a in with_sightings if a.sightings)
    if derived:
        st.caption(f"{derived} verdict(s) predate the stored review design: their inclusion probability is derived "
                   "from the audit design in force now.")

    st.markdown("**Frames** (secondary view: every reviewed frame counted on its own)")
    st.caption("Frame-level precision and recall over the reviewed frames, lower bounds are 95% Wilson bounds. Frames "
               "of one sighting are not independent, so these intervals are too narrow, and an audited miss counts "
               "once although it stands for many: the rollout decisions read the sighting figures above.")
    st.dataframe(
        [
            {"site": a.site, "model": _model(a), "reviewed frames": a.reviewed,
             "frame precision": _num(a.precision), "frame precision ≥": _num(a.precision_low),
             "frame recall": _num(a.recall), "frame recall ≥": _num(a.recall_low),
             "TP frames": a.tp, "FP frames": a.fp, "FN frames (missed)": a.fn, "disputed frames": a.disputed}
            for a in rows
        ],
        hide_index=True, width="stretch",
    )


def reports_section() -> None:
    st.subheader("Backtest reports")
    folder = settings().reports_dir
    reports = _reports(str(folder))
    if not reports:
        st.caption(f"None yet: `bearwatch backtest --model M --site S` writes one into {folder}.")
        return
    names = {f"{r.name} ({r.modified_at:%Y-%m-%d %H:%M}, {r.size_bytes // 1024} KiB)": r for r in reports}
    chosen = names[st.selectbox("Report", list(names), key="backtest_report")]
    html = chosen.path.read_text(encoding="utf-8")
    st.download_button("Download", html, file_name=chosen.name, mime="text/html", key="backtest_download")
    if st.toggle("Open here", key="backtest_open"):
        st.components.v1.html(html, height=900, scrolling=True)


st.title("Models")
rows = _models(settings().database_url)
if not rows:
    st.info("No models yet: an admin registers one with `bearwatch model register`.")
    reports_section()
    st.stop()
st.dataframe(
    [
        {
            "id": m.model_id, "name": m.name, "role": m.role.value, "threshold": m.threshold,
            "classes": ", ".join(m.classes), "positive": ", ".join(m.positive_classes),
            "sha256": m.sha256_short, "rollout model of": ", ".join(m.rollout_sites) or "—",
            "registered": when(m.created_at),
        }
        for m in rows
    ],
    hide_index=True,
    width="stretch",
)

if actor.may(Role.ADMIN):
    st.subheader("Change a model")
    st.caption("A new threshold sends every site that rolls this model out back to manual: the gates start again.")
    labels = {f"{m.name} (id {m.model_id}, sha256 {m.sha256_short})": m for m in rows}
    chosen = labels[st.selectbox("Model", list(labels), key="model_choice")]
    with st.form("model_change"):
        roles = [r.value for r in ModelRole]
        role = st.selectbox("Role", roles, index=roles.index(chosen.role.value), key=f"model_role_{chosen.model_id}")
        threshold = st.number_input(
            "Threshold", min_value=0.01, max_value=0.99, value=float(chosen.threshold), step=0.01, key=f"model_threshold_{chosen.model_id}"
        )
        submitted = st.form_submit_button("Save")
    if submitted:
        try:
            with write_transaction(factory()) as session:
                set_model_role(session, actor, chosen.model_id, ModelRole(role))
                set_model_threshold(session, actor, chosen.model_id, float(threshold), now=utcnow())
        except BearwatchError as exc:
            st.error(str(exc))
        else:
            _models.clear()
            st.success(f"{chosen.name}: role {role}, threshold {threshold:g}")

agreement_section()
reports_section()
