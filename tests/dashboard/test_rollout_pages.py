"""Rollout, Alert rates, Drift and the Models additions under AppTest, on SQLite and
PostgreSQL, over sites with simulated weeks of history (tests/dashboard/history.py):
the figures each page shows are the ones shadow computes for the gates and the guard."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest

from bearwatch.schema import Site, Stage, StageChange, utcnow
from dashboard.queries.agreement import model_agreement
from dashboard.queries.alert_rates import site_alert_rates
from shadow.alert_rates import ALL, alert_rate_comparison, baseline_exposure
from shadow.gates import GateOutcome, evaluate_gate
from shadow.guard import rate_decision
from shadow.periods import latest_manual_period, thresholds_of
from shadow.sighting_evidence import site_sightings
from tests.dashboard.conftest import login, open_app, page_text
from tests.dashboard.history import (
    add_users,
    build_gate_sites,
    build_lake,
    build_plan_site,
    build_trial_site,
)
from tests.dashboard.seed import PASSWORD, Seeded


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BEARWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("BEARWATCH_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def gate_sites(env: Path, factory: sessionmaker[Session]) -> Path:
    add_users(factory)
    build_gate_sites(factory, env, utcnow())
    return env


@pytest.fixture
def elm(env: Path, factory: sessionmaker[Session]) -> Path:
    add_users(factory)
    build_plan_site(factory, env, utcnow())
    return env


@pytest.fixture
def aspen(env: Path, factory: sessionmaker[Session]) -> Path:
    add_users(factory)
    build_trial_site(factory, env, utcnow())
    return env


def _site(session: Session, name: str) -> Site:
    site = session.scalar(sa.select(Site).where(Site.name == name))
    assert site is not None
    return site


@pytest.fixture
def willow(env: Path, factory: sessionmaker[Session]) -> Path:
    add_users(factory)
    build_lake(factory, env, utcnow())
    return env


def _ledger(factory: sessionmaker[Session], site: str) -> list[tuple[Stage | None, Stage, str]]:
    with factory() as session:
        return [tuple(r) for r in session.execute(
            sa.select(StageChange.from_stage, StageChange.to_stage, StageChange.actor).join(Site, Site.id == StageChange.site_id)
            .where(Site.name == site).order_by(StageChange.id))]


def _rollout(name: str) -> AppTest:
    app = login(open_app(), name, PASSWORD)
    app.switch_page("views/rollout.py").run()
    assert not app.exception
    return app


def _promote(app: AppTest, site: str, reason: str) -> AppTest:
    app.selectbox(key="rollout_site").select(site).run()
    app.text_input(key="promote_reason").input(reason)
    next(b for b in app.button if b.label == "Promote").click()
    return app.run()


def test_ops_promotes_on_a_passing_gate_and_demotes(gate_sites: Path, factory: sessionmaker[Session]) -> None:
    app = _rollout("ops")
    table = app.dataframe[0].value
    assert set(table["site"]) == {"oak", "pine"} and set(table["stage"]) == {"manual"}
    app.selectbox(key="rollout_site").select("oak").run()
    checks = app.dataframe[1].value
    assert "Gate **manual → limited**: ✓ pass" in page_text(app), checks.to_dict("records")
    assert "sighting_recall" in set(checks["check"]) and all("pass" in r for r in checks["result"])

    _promote(app, "oak", "shadow numbers are good")
    assert _ledger(factory, "oak")[-1] == (Stage.MANUAL, Stage.LIMITED, "ops")
    assert "oak promoted to limited" in page_text(app)
    with factory() as session:
        change = session.scalars(sa.select(StageChange).order_by(StageChange.id.desc())).first()
        assert change is not None and change.reason == "shadow numbers are good"
        assert change.evidence["gate"]["outcome"] == "pass" and change.evidence["trial"]["end"]
    ledger = app.dataframe[-1].value
    assert ledger.iloc[0]["site"] == "oak" and ledger.iloc[0]["who"] == "ops" and "pass" in ledger.iloc[0]["evidence"]

    app.selectbox(key="rollout_site").select("oak").run()
    app.selectbox(key="demote_to").select("manual").run()
    app.text_input(key="demote_reason").input("rangers asked for it")
    next(b for b in app.button if b.label == "Demote").click()
    app.run()
    assert _ledger(factory, "oak")[-1] == (Stage.LIMITED, Stage.MANUAL, "ops")
    assert "oak demoted to manual" in page_text(app)


def test_a_failing_gate_shows_its_failing_checks_and_refuses(gate_sites: Path, factory: sessionmaker[Session]) -> None:
    app = _rollout("ops")
    before = _ledger(factory, "pine")
    _promote(app, "pine", "let's try")
    assert any("stays manual" in str(e.value) and "fail" in str(e.value) for e in app.error)
    assert "fail: sighting_recall" in page_text(app)
    assert _ledger(factory, "pine") == before


def test_a_promotion_made_meanwhile_by_someone_else_refuses_the_second_click(
        gate_sites: Path, factory: sessionmaker[Session]) -> None:
    first, second = _rollout("ops"), _rollout("admin")
    second.selectbox(key="rollout_site").select("oak").run()
    assert "Gate **manual → limited**: ✓ pass" in page_text(second)
    _promote(first, "oak", "shadow numbers are good")
    assert _ledger(factory, "oak")[-1] == (Stage.MANUAL, Stage.LIMITED, "ops")

    # the admin's screen still shows the manual -> limited gate; the click must not promote
    # the site on through the limited -> expanded gate it never saw (an override would)
    # (filling in a form does not rerun the page: the click is the first run on fresh data)
    second.text_input(key="promote_reason").input("shadow numbers are good")
    second.checkbox(key="promote_override").check()
    next(b for b in second.button if b.label == "Promote").click()
    second.run()
    assert _ledger(factory, "oak")[-1] == (Stage.MANUAL, Stage.LIMITED, "ops")
    assert any("oak is limited now, not manual as when you looked" in str(e.value) for e in second.error), page_text(second)
    assert "oak: limited" in page_text(second), "the page shows the site as it is now"


def test_a_ranger_sees_the_rollout_read_only(gate_sites: Path, factory: sessionmaker[Session]) -> None:
    app = _rollout("ranger")
    assert "Read-only for rangers" in page_text(app)
    app.selectbox(key="rollout_site").select("oak").run()
    assert not app.exception and "Gate **manual → limited**" in page_text(app), "the gate is there to read"
    assert not [b for b in app.button if b.label in ("Promote", "Demote")], "no form that is only refused after submit"
    assert not app.text_input, "no reason to type"


def test_the_gate_table_names_units_and_methods_and_plans_an_inconclusive_check(
        elm: Path, factory: sessionmaker[Session]) -> None:
    app = _rollout("ops")
    app.selectbox(key="rollout_site").select("elm").run()
    assert not app.exception
    with factory() as session:
        gate = evaluate_gate(session, _site(session, "elm"), utcnow())
        shadow_days = thresholds_of(_site(session, "elm")).shadow_days
    recall = next(c for c in gate.checks if c.name == "sighting_recall")
    assert gate.outcome is GateOutcome.INCONCLUSIVE and recall.outcome is GateOutcome.INCONCLUSIVE, recall.detail
    checks = app.dataframe[1].value
    assert {"unit", "value [95% bounds]", "plan", "method"} <= set(checks.columns)
    row = checks[checks["check"] == "sighting_recall"].iloc[0]
    assert row["unit"] == "sightings"
    assert "Horvitz-Thompson" in row["method"] and "anytime-valid" in row["method"]
    assert row["value [95% bounds]"] == f"{recall.value:.2f} [{recall.data['ci_low']:.2f}, {recall.data['ci_high']:.2f}]"
    plan = recall.data["plan"]
    assert f"about {plan['more']} more caught sightings with no further miss found" in row["plan"], row["plan"]
    audit = plan["audit"]
    if audit["audit_rate"] is None:
        assert "no audit rate decides it within" in row["plan"]
    else:  # the audit rate that decides it in the window, and the rangers' workload it means
        assert (f"an audit of {audit['audit_rate']:.0%} of unflagged frames in every stratum decides it within "
                f"{audit['horizon_days']:.0f} days: the rangers review ~{audit['audited_frames_per_day']:.0f} audited "
                "frames/day") in row["plan"], row["plan"]
    window = checks[checks["check"] == "shadow_window_days"].iloc[0]
    assert window["unit"] == "days" and re.fullmatch(r"(\d+ d( \d+ h)?|\d+ h( \d+ min)?|\d+ min|\d+ s) more", window["plan"])
    assert re.fullmatch(r"\d+ (d|h|min|s)( \d+ (h|min))?", window["value [95% bounds]"]), "a span, not 0.00268537 days"
    assert window["needs"] == f">= {shadow_days:g} d", window["needs"]
    assert checks[checks["check"] == "alert_precision"].iloc[0]["unit"] == "alerts"
    assert not checks[checks["check"] == "cameras_healthy"].iloc[0]["plan"], "a passing check has no plan"
    expander = next(e for e in app.expander if e.label == "What would decide the inconclusive checks")
    text = "\n".join(str(m.value) for m in expander.markdown)
    assert f"- **sighting_recall** (sightings): {row['plan']}" in text


def _charts(app: AppTest) -> list[str]:
    """Each Vega-Lite chart on the page: its spec and its data tables, as text."""
    import pyarrow as pa

    out = []
    for e in app.get("vega_lite_chart"):
        tables = [pa.ipc.open_stream(d.data.data).read_all().to_pandas().to_csv() for d in e.proto.datasets]
        out.append("\n".join([e.proto.spec, *tables]))
    return out


def test_alert_rates_and_drift_with_a_history(willow: Path) -> None:
    app = login(open_app(), "ops", PASSWORD)
    app.switch_page("views/alert_rates.py").run()
    app.selectbox(key="rates_days").select(14).run()
    assert not app.exception
    text = page_text(app)
    assert "willow is manual" in text and "per camera-hour (" in text, "the baseline is shown"
    assert "the baseline the guard used while expanded" in text, "the one the guard compared the plotted alerts with"
    charts = _charts(app)
    assert charts and all('"low"' in c and '"high"' in c for c in charts), "the band is drawn"
    assert any("→ limited" in c and "→ expanded" in c for c in charts), "stage changes are marked"

    app.switch_page("views/drift.py").run()
    app.selectbox(key="drift_days").select(14).run()
    assert not app.exception
    text = page_text(app)
    assert "Reference window" in text and "drift in" in text
    charts = _charts(app)
    assert any("embedding_mmd" in c for c in charts) and any("out-of-domain share" in c for c in charts)
    cameras = next(df.value for df in app.dataframe if "health" in df.value.columns)
    assert cameras["camera"].tolist() == ["cam-1", "cam-2"]


def test_alert_rates_show_the_guards_baseline_and_e_values_on_the_trial_scope(
        aspen: Path, factory: sessionmaker[Session]) -> None:
    # aspen is limited on a trial scope of one of its two cameras: the baseline the guard
    # tests against counts that camera's sightings and camera-hours only
    with factory() as session:
        site = _site(session, "aspen")
        t = thresholds_of(site)
        now = utcnow()
        comparison = alert_rate_comparison(session, site, now, t)
        assert comparison is not None
        base = comparison.baseline
        period = latest_manual_period(session, site, now)
        assert period is not None
        unscoped = baseline_exposure(session, site, period, t, ALL)
        assert (unscoped.day_hours, unscoped.night_hours) != (base.day_hours, base.night_hours), "the scope matters here"
        rates = site_alert_rates(session, "aspen", now - timedelta(days=7), now + timedelta(seconds=1))
        decision = rate_decision(comparison.test, t)
    assert rates is not None
    assert [(b.period, b.sightings, b.camera_hours) for b in rates.baselines] == [
        ("day", base.day_events, base.day_hours), ("night", base.night_events, base.night_hours)]
    assert rates.guard is not None
    assert (rates.guard.alerts, rates.guard.baseline_sightings) == (comparison.test.x1, comparison.test.x0)
    assert sum(p.events for p in rates.points) == comparison.current.events, "the daily points add up to the guard's count"

    app = login(open_app(), "ops", PASSWORD)
    app.switch_page("views/alert_rates.py").run()
    app.selectbox(key="rates_site").select("aspen").run()
    app.selectbox(key="rates_days").select(7).run()
    assert not app.exception
    text = page_text(app)
    assert "aspen is limited" in text and "on cameras cam-1, all hours" in text
    for period, events, hours in (("day", base.day_events, base.day_hours), ("night", base.night_events, base.night_hours)):
        assert f"baseline {events / hours:.4f} per camera-hour ({events} bear episodes in {hours:.0f} camera-hours)" in text, period
    assert "anytime-valid e-process (mixture SPRT)" in text
    assert f"{comparison.test.x1} alert episodes in {comparison.test.t1:.0f} camera-hours" in text
    guard = next(df.value for df in app.dataframe if "e-value" in df.value.columns)
    assert guard["e-value"].tolist() == [f"{decision.e_up:.3g}", f"{decision.e_down:.3g}"]
    assert set(guard["demotes at"]) == {f"{decision.level:g}"}


def test_alert_rates_drift_and_rollout_with_no_history(park: Seeded) -> None:
    app = login(open_app(), "admin", PASSWORD)
    for page in ("views/alert_rates.py", "views/drift.py", "views/rollout.py"):
        app.switch_page(page).run()
        assert not app.exception, page
    app.switch_page("views/alert_rates.py").run()
    assert "No manual baseline" in page_text(app)
    app.switch_page("views/drift.py").run()
    assert "No drift check stored" in page_text(app)


def test_models_page_shows_sightings_first_and_opens_a_backtest_report(
        gate_sites: Path, factory: sessionmaker[Session]) -> None:
    reports = gate_sites / "reports"
    reports.mkdir()
    (reports / "backtest-oak-20260501T000000Z.html").write_text("<h1>Backtest oak</h1><p>precision 0.91</p>", encoding="utf-8")
    app = login(open_app(), "ops", PASSWORD)
    app.switch_page("views/models.py").run()
    assert not app.exception
    sightings = app.dataframe[1].value
    assert set(sightings["site"]) == {"oak", "pine"}
    oak = sightings[sightings["site"] == "oak"].iloc[0]
    pine = sightings[sightings["site"] == "pine"].iloc[0]
    assert oak["model"] == "oak-model (rollout)" and oak["sighting recall"] > 0.9 > pine["sighting recall"]
    now = utcnow()
    with factory() as session:
        for name, row in (("oak", oak), ("pine", pine)):
            evidence = site_sightings(session, _site(session, name), now - timedelta(days=30), now)
            assert evidence is not None
            r = evidence.report
            assert row["sighting recall"] == round(r.recall.value, 3)
            assert row["recall 95% bounds"] == f"{r.recall.low:.3f} – {r.recall.high:.3f}"
            assert row["precision 95% bounds"] == f"{r.precision.low:.3f} – {r.precision.high:.3f}"
            assert (row["caught sightings"], row["missed sightings (found by audit)"], row["missed sightings (reported)"]) == (
                r.caught, len(r.misses_found), len(r.misses_reported))
    assert pine["missed sightings (found by audit)"] > 0
    text = page_text(app)
    assert "**Sightings** (the unit of the rollout decisions" in text
    assert "Horvitz-Thompson" in text and "95% anytime-valid" in text
    frames = app.dataframe[2].value  # the frame-level view stays, second and labelled
    assert "secondary view" in text and {"reviewed frames", "frame recall", "FN frames (missed)"} <= set(frames.columns)
    assert "backtest-oak-20260501T000000Z.html" in app.selectbox(key="backtest_report").value
    app.toggle(key="backtest_open").set_value(True).run()
    assert any("Backtest oak" in str(e.proto) for e in app.get("iframe"))


def test_model_agreement_reads_sightings_in_a_bounded_number_of_statements(
        gate_sites: Path, factory: sessionmaker[Session]) -> None:
    statements: list[str] = []
    engine = factory.kw["bind"]
    sa.event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: statements.append(statement))
    now = utcnow()
    with factory() as session:
        rows = model_agreement(session, now - timedelta(days=30), now + timedelta(seconds=1))
    assert len(rows) == 2 and all(r.sightings is not None and r.sightings.recall.n > 0 for r in rows)
    # one query for the pairs, sites and models once, then site_sightings' 3 per pair (no scored count)
    selects = [q for q in statements if q.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 3 + 3 * len(rows), selects
