"""Rollout, Alert rates, Drift and the Models additions under AppTest, on SQLite and
PostgreSQL, over sites with simulated weeks of history (tests/dashboard/history.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest

from bearwatch.schema import Site, Stage, StageChange, utcnow
from tests.dashboard.conftest import login, open_app, page_text
from tests.dashboard.history import add_users, build_gate_sites, build_lake
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
    assert "recall_lower_bound" in set(checks["check"]) and all("pass" in r for r in checks["result"])

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
    assert "fail: recall_lower_bound" in page_text(app)
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


def test_a_ranger_sees_the_rollout_but_the_service_refuses_a_promotion(gate_sites: Path, factory: sessionmaker[Session]) -> None:
    app = _rollout("ranger")
    assert "Read-only for rangers" in page_text(app)
    before = _ledger(factory, "oak")
    _promote(app, "oak", "I think it is ready")
    assert any("ranger (ranger) may not promote a site" in str(e.value) for e in app.error)
    assert _ledger(factory, "oak") == before


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


def test_alert_rates_drift_and_rollout_with_no_history(park: Seeded) -> None:
    app = login(open_app(), "admin", PASSWORD)
    for page in ("views/alert_rates.py", "views/drift.py", "views/rollout.py"):
        app.switch_page(page).run()
        assert not app.exception, page
    app.switch_page("views/alert_rates.py").run()
    assert "No manual baseline" in page_text(app)
    app.switch_page("views/drift.py").run()
    assert "No drift check stored" in page_text(app)


def test_models_page_shows_agreement_per_site_and_opens_a_backtest_report(gate_sites: Path) -> None:
    reports = gate_sites / "reports"
    reports.mkdir()
    (reports / "backtest-oak-20260501T000000Z.html").write_text("<h1>Backtest oak</h1><p>precision 0.91</p>", encoding="utf-8")
    app = login(open_app(), "ops", PASSWORD)
    app.switch_page("views/models.py").run()
    assert not app.exception
    agreement = app.dataframe[1].value
    assert set(agreement["site"]) == {"oak", "pine"}
    oak = agreement[agreement["site"] == "oak"].iloc[0]
    pine = agreement[agreement["site"] == "pine"].iloc[0]
    assert oak["recall"] > 0.9 > pine["recall"] and oak["model"] == "oak-model (rollout)"
    assert "backtest-oak-20260501T000000Z.html" in app.selectbox(key="backtest_report").value
    app.toggle(key="backtest_open").set_value(True).run()
    assert any("Backtest oak" in str(e.proto) for e in app.get("iframe"))
