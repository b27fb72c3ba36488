"""Drift: per site over time, image statistics, score distribution, embedding drift and
out-of-domain share, with the reference window and the cameras' health beside them."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

from bearwatch.schema import Role, utcnow
from dashboard.context import factory, page_actor, settings, site_and_days, when
from dashboard.queries.drift import SCORE_BINS, SiteDrift, site_drift

page_actor(Role.OPS)



@st.cache_data(ttl=30, show_spinner=False)
def _drift(database_url: str, site: str, days: int) -> SiteDrift | None:
    now = utcnow()
    with factory()() as session:
        return site_drift(session, site, now - timedelta(days=days), now + timedelta(seconds=1), now)


def _reference_layer(d: SiteDrift) -> list[alt.Chart]:
    if d.reference is None:
        return []
    ref = pd.DataFrame([{"start": pd.Timestamp(d.reference[0]), "end": pd.Timestamp(d.reference[1])}])
    return [alt.Chart(ref).mark_rect(opacity=0.12, color="#6a1b9a").encode(x="start:T", x2="end:T")]


def line_chart(d: SiteDrift, frame: pd.DataFrame, columns: list[str], title: str) -> alt.LayerChart | alt.FacetChart:
    long = frame.melt(id_vars=["day"], value_vars=columns, var_name="statistic", value_name="value").dropna()
    line = alt.Chart(long).mark_line(point=True).encode(x=alt.X("day:T", title=None), y="value:Q", color="statistic:N",
                                                       tooltip=["day:T", "statistic:N", alt.Tooltip("value:Q", format=".3f")])
    return alt.layer(*_reference_layer(d), line).properties(height=220, title=title)


st.title("Drift")
url = settings().database_url
site, days = site_and_days("drift")
d = _drift(url, site, days)
if d is None:
    st.warning(f"no site named {site}")
    st.stop()

latest = d.checks[0] if d.checks else None
if latest is None:
    st.info("No drift check stored in this window (`bearwatch drift SITE --record`, or the shadow loop, stores them).")
elif latest.alarm:
    st.error(f"Latest drift check ({when(latest.at, site)}): {latest.detail}")
else:
    st.success(f"Latest drift check ({when(latest.at, site)}): {latest.detail}")
st.caption(
    f"{d.site} is {d.stage.value}. Reference window (purple): "
    + (f"{when(d.reference[0], site)} → {when(d.reference[1], site)}" if d.reference else "none yet (no manual period long enough)")
    + (" — the latest check's; the next check has none yet" if d.reference and d.reference_is_stored else "")
)

main, side = st.columns([3, 1])
with side:
    st.markdown("**Cameras**")
    st.dataframe(
        [{"camera": c.name, "health": c.health.value if c.enabled else "disabled",
          "last frame": f"{c.last_frame_at:%m-%d %H:%M}Z" if c.last_frame_at else "never"} for c in d.cameras],
        hide_index=True, width="stretch",
    )
with main:
    if not d.days:
        st.info("No usable frames in this window.")
    else:
        frame = pd.DataFrame([
            {"day": pd.Timestamp(x.day), "brightness": x.brightness, "sharpness": x.sharpness, "night share": x.night_share,
             "mean score": x.mean_score, "flag share": x.flag_share, "out-of-domain share": x.ood_share, "frames": x.frames}
            for x in d.days
        ])
        c1, c2 = st.columns(2)
        c1.altair_chart(line_chart(d, frame, ["brightness"], "Brightness (daily mean)"), width="stretch")
        c2.altair_chart(line_chart(d, frame, ["sharpness"], "Sharpness (daily mean)"), width="stretch")
        st.altair_chart(line_chart(d, frame, ["night share", "flag share", "out-of-domain share", "mean score"],
                                   "Shares and mean score"), width="stretch")
        if d.score_bins:
            bins = pd.DataFrame([{"day": pd.Timestamp(b.day), "score": f"{b.low:.1f}–{b.low + 1 / SCORE_BINS:.1f}", "frames": b.count}
                                 for b in d.score_bins])
            st.altair_chart(alt.Chart(bins).mark_rect().encode(
                x=alt.X("day:T", title=None), y=alt.Y("score:O", sort="descending", title="bear score"),
                color=alt.Color("frames:Q", scale=alt.Scale(scheme="blues")), tooltip=["day:T", "score:O", "frames:Q"],
            ).properties(height=220, title="Score distribution (rollout model)"), width="stretch")
    if d.points:
        pts = pd.DataFrame([{"at": pd.Timestamp(p.at), "metric": p.metric, "statistic": p.statistic,
                             "min effect": p.min_effect, "alarm": p.alarm} for p in d.points])
        emb = pts[pts["metric"] == "embedding_mmd"]
        if not emb.empty:
            layers = [alt.Chart(emb).mark_line(point=True, color="#6a1b9a").encode(
                x=alt.X("at:T", title=None), y=alt.Y("statistic:Q", title="MMD²"), tooltip=["at:T", "statistic:Q", "alarm:N"])]
            layers.append(alt.Chart(emb.head(1)).mark_rule(color="#c62828", strokeDash=[4, 4]).encode(y="min effect:Q"))
            st.altair_chart(alt.layer(*layers).properties(height=200, title="Embedding drift (per check; dashed: alarm effect size)"),
                            width="stretch")
        st.altair_chart(alt.Chart(pts).mark_point(filled=True).encode(
            x=alt.X("at:T", title=None), y=alt.Y("statistic:Q"), color="metric:N",
            shape=alt.Shape("alarm:N", scale=alt.Scale(domain=[False, True], range=["circle", "triangle-up"])),
            tooltip=["at:T", "metric:N", alt.Tooltip("statistic:Q", format=".3f"), "alarm:N"],
        ).properties(height=220, title="Drift checks: each metric's statistic (triangles alarm)"), width="stretch")
    if d.checks:
        st.dataframe([{"checked": when(c.at, site), "alarm": c.alarm, "detail": c.detail} for c in d.checks[:50]],
                     hide_index=True, width="stretch")
