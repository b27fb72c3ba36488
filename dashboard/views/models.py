"""Models: registered versions, their roles, thresholds, classes and the sites that roll
each out. Admins can change a model's role or threshold."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import streamlit as st

from bearwatch.admin import set_model_role, set_model_threshold
from bearwatch.errors import BearwatchError
from bearwatch.schema import ModelRole, Role, utcnow
from dashboard.context import factory, page_actor, settings
from dashboard.queries.agreement import AgreementRow, ReportFile, backtest_reports, model_agreement
from dashboard.queries.models import ModelRow, models_overview

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


def agreement_section() -> None:
    st.subheader(f"Agreement with the rangers (last {AGREEMENT_DAYS} days)")
    rows = _agreement(settings().database_url)
    if not rows:
        st.caption("No reviewed frames with predictions yet.")
        return
    st.caption("Per site, each model version scored there: the rollout model and any challenger in shadow, on the same "
               "reviewed frames. Lower bounds are 95% Wilson bounds.")
    st.dataframe(
        [
            {"site": a.site, "model": a.model + (" (rollout)" if a.is_rollout else ""), "reviewed": a.reviewed,
             "precision": _num(a.precision), "precision ≥": _num(a.precision_low), "recall": _num(a.recall),
             "recall ≥": _num(a.recall_low), "TP": a.tp, "FP": a.fp, "FN (missed)": a.fn, "disputed": a.disputed}
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
            "registered": f"{m.created_at:%Y-%m-%d %H:%M}Z",
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
            with factory().begin() as session:
                set_model_role(session, actor, chosen.model_id, ModelRole(role))
                set_model_threshold(session, actor, chosen.model_id, float(threshold), now=utcnow())
        except BearwatchError as exc:
            st.error(str(exc))
        else:
            _models.clear()
            st.success(f"{chosen.name}: role {role}, threshold {threshold:g}")

agreement_section()
reports_section()
