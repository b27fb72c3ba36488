"""Alert rates: per site, alerts per camera-hour per day against the manual baseline
and the site's [low, high] band, stage changes marked, day and night apart, counted as
the guard counts them (shadow.alert_rates); for a site in limited or expanded, the
guard's test now: the ratio, its e-values and the level at which it demotes."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

from bearwatch.schema import Role, Stage, utcnow
from dashboard.context import factory, page_actor, settings, site_and_days, when
from dashboard.queries.alert_rates import PERIODS, GuardView, SiteRates, site_alert_rates

page_actor(Role.OPS)



@st.cache_data(ttl=30, show_spinner=False)
def _rates(database_url: str, site: str, days: int) -> SiteRates | None:
    now = utcnow()
    with factory()() as session:
        return site_alert_rates(session, site, now - timedelta(days=days), now + timedelta(seconds=1))


def period_chart(rates: SiteRates, period: str) -> alt.LayerChart | alt.FacetChart | None:
    points = pd.DataFrame([
        {"day": pd.Timestamp(p.day), "alerts per camera-hour": p.rate, "alerts": p.events, "camera-hours": p.camera_hours}
        for p in rates.points if p.period == period
    ])
    if points.empty:
        return None
    layers: list[alt.Chart] = []
    base_rate = next((b.rate for b in rates.baselines if b.period == period and b.rate is not None), None)
    if base_rate is not None:
        band = pd.DataFrame([{"low": rates.low * base_rate, "high": rates.high * base_rate, "baseline": base_rate}])
        layers.append(alt.Chart(band).mark_rect(opacity=0.15, color="#2e7d32").encode(
            y=alt.Y("low:Q", title="alerts per camera-hour"), y2="high:Q", tooltip=["low:Q", "high:Q"]))
        layers.append(alt.Chart(band).mark_rule(color="#2e7d32", strokeDash=[4, 4]).encode(y=alt.Y("baseline:Q", title="alerts per camera-hour"), tooltip=["baseline:Q"]))
    layers.append(alt.Chart(points).mark_line(point=True, color="#1565c0").encode(
        x=alt.X("day:T", title=None), y=alt.Y("alerts per camera-hour:Q"),
        tooltip=["day:T", "alerts:Q", "camera-hours:Q", alt.Tooltip("alerts per camera-hour:Q", format=".4f")]))
    if rates.stage_marks:
        marks = pd.DataFrame([{"at": pd.Timestamp(m.at), "change": f"→ {m.to_stage.value}", "by": m.actor} for m in rates.stage_marks])
        layers.append(alt.Chart(marks).mark_rule(color="#e65100").encode(x="at:T", tooltip=["at:T", "change:N", "by:N"]))
        layers.append(alt.Chart(marks).mark_text(align="left", dx=3, dy=-4, color="#e65100").encode(
            x="at:T", y=alt.value(8), text="change:N"))
    return alt.layer(*layers).properties(height=260, title=f"{period}")


def guard_section(rates: SiteRates, g: GuardView) -> None:
    st.subheader("The guard now")
    ratio = "no baseline sighting" if g.ratio is None else f"{g.ratio:.2f}× the baseline"
    weighting = "day and night weighted by the baseline's rates" if g.standardised else "day and night pooled"
    st.markdown(
        f"Alert-rate ratio **{ratio}**: {g.alerts} alert episodes in {g.exposure:.0f} camera-hours ({weighting}) against "
        f"{g.baseline_sightings} confirmed bear episodes in {g.baseline_camera_hours:.0f} camera-hours; band "
        f"[{rates.low:g}, {rates.high:g}]."
    )
    st.dataframe(
        [
            {"test": f"rate up: ratio > {rates.high:g}", "e-value": f"{g.e_up:.3g}", "demotes at": f"{g.level:g}",
             "now": "demotes" if g.direction == "up" else "below the level"},
            {"test": f"rate down: ratio < {rates.low:g}", "e-value": f"{g.e_down:.3g}", "demotes at": f"{g.level:g}",
             "now": "demotes" if g.direction == "down" else "below the level"},
        ],
        hide_index=True, width="stretch",
    )
    st.caption(
        f"Method: {g.method}. The guard checks every minute; an e-value is valid at every look, so the chance of a "
        f"false demotion over the whole stage stays at most {g.alpha:g} (each side tested at {g.alpha / 2:g}: demotion "
        f"level 2/α = {g.level:g})."
    )
    if g.demotes:
        st.error(f"The alert rate went {g.direction}: the guard demotes {rates.site} to manual at its next run.")


st.title("Alert rates")
url = settings().database_url
site, days = site_and_days("rates")
rates = _rates(url, site, days)
if rates is None:
    st.warning(f"no site named {site}")
    st.stop()
period_text = (f"the manual period {when(rates.baseline_start, site)} → {when(rates.baseline_end, site)}"
               if rates.baseline_start and rates.baseline_end else "the latest manual period")
st.caption(
    f"{rates.site} is {rates.stage.value}. Alert episodes per camera-hour per day (alerts outside manual; alerts on one "
    f"camera less than an hour apart (guard_episode_gap_s) count once), on {rates.scope}. The "
    f"green band is {rates.low:g}×–{rates.high:g}× the manual baseline: confirmed bear episodes per camera-hour of "
    f"{period_text}, on the same scope ({rates.baseline_note}). Orange lines are stage changes. Counted as the guard "
    "counts them (shadow.alert_rates)."
)
if rates.guard is not None:
    guard_section(rates, rates.guard)
elif rates.stage is not Stage.MANUAL:
    st.caption("The guard has no alert-rate test yet: no manual baseline or no camera-hours since the stage began.")
if not rates.points:
    st.info("No frames or alerts in this window.")
for period in PERIODS:
    base = next((b for b in rates.baselines if b.period == period), None)
    st.subheader(period.capitalize())
    if base is None or base.rate is None:
        st.caption("No manual baseline for this period yet.")
    else:
        st.caption(f"baseline {base.rate:.4f} per camera-hour ({base.sightings} bear episodes in {base.camera_hours:.0f} camera-hours)")
    chart = period_chart(rates, period)
    if chart is None:
        st.caption(f"No {period} camera-hours in this window.")
    else:
        st.altair_chart(chart, width="stretch")
