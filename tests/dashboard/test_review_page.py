"""The Review page under AppTest, on SQLite and PostgreSQL: a ranger confirms, undoes,
dismisses and reports a missed bear by button; each verdict is in the database with
what it did to the alert, and the next frame is on the page at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest

from bearwatch.schema import (
    Alert,
    AlertSource,
    AlertStatus,
    Camera,
    Decision,
    Frame,
    ModelVersion,
    Stage,
    Verdict,
    utcnow,
)
from shadow.alerts import process_new_flags
from shadow.rollout import record_stage_change
from shadow.sites import get_site, set_rollout_model
from tests.dashboard.conftest import login, open_app, page_text
from tests.dashboard.seed import PASSWORD, Seeded


@pytest.fixture
def review_park(park: Seeded, factory: sessionmaker[Session]) -> Seeded:
    """north in a limited trial (creek's flagged frame becomes a held alert); south
    scored by the same model with every unflagged frame in the audit sample."""
    now = utcnow()
    with factory.begin() as session:
        north = get_site(session, "north")
        record_stage_change(session, north, Stage.LIMITED, actor="test", reason="trial", now=now - timedelta(hours=1),
                            trial=(now - timedelta(hours=1), now + timedelta(days=7)))
        south = get_site(session, "south")
        set_rollout_model(session, south, session.get(ModelVersion, park.model_id), actor="test", now=now)
        south.thresholds = {**(south.thresholds or {}), "audit_rate": 1.0}
    process_new_flags(factory, utcnow())
    return park


def _shown_frame(app: AppTest) -> str:
    """'site / camera' of the frame on screen."""
    return next(str(m.value) for m in app.markdown if " / " in str(m.value)).split("**")[1]


def _verdicts(factory: sessionmaker[Session]) -> list[tuple[str, Verdict]]:
    with factory() as session:
        return [(cam, v) for cam, v in session.execute(
            sa.select(Camera.name, Decision.verdict).join(Frame, Frame.id == Decision.frame_id)
            .join(Camera, Camera.id == Frame.camera_id).order_by(Decision.id))]


def _creek_alert(factory: sessionmaker[Session], park: Seeded) -> AlertStatus:
    with factory() as session:
        return session.scalar(sa.select(Alert.status).where(Alert.camera_id == park.camera_ids["creek"], Alert.source == AlertSource.MODEL))


def _click(app: AppTest, key: str) -> AppTest:
    app.button(key=key).click()
    return app.run()


def test_ranger_confirms_undoes_dismisses_and_reports_a_missed_bear(review_park: Seeded, factory: sessionmaker[Session]) -> None:
    app = login(open_app(), "ranger", PASSWORD)
    app.switch_page("views/review.py").run()
    assert not app.exception
    text = page_text(app)
    assert _shown_frame(app) == "north / creek", "held alerts come first"
    assert "held alert" in text and "waiting" in text and "confirming sends the alert" in text
    assert "bear score **0.93**" in text and "stage: **limited**" in text
    assert app.button(key="review_missed").disabled and not app.button(key="review_confirm").disabled
    assert _creek_alert(factory, review_park) is AlertStatus.PENDING

    _click(app, "review_confirm")
    assert _verdicts(factory) == [("creek", Verdict.CONFIRM)]
    assert _creek_alert(factory, review_park) is AlertStatus.QUEUED, "confirming sent the held alert"
    assert _shown_frame(app) != "north / creek", "the next frame is on screen at once"
    assert "the alert is sent" in page_text(app)

    _click(app, "review_undo")
    assert _verdicts(factory) == []
    assert _creek_alert(factory, review_park) is AlertStatus.PENDING, "undo holds the alert again"
    assert _shown_frame(app) == "north / creek" and "undone" in page_text(app)

    _click(app, "review_dismiss")
    assert _verdicts(factory) == [("creek", Verdict.DISMISS)]
    assert _creek_alert(factory, review_park) is AlertStatus.SUPPRESSED

    # An audit frame the model did not flag: 'missed' reports a bear and sends a sighting alert.
    while _shown_frame(app) != "south / shore":
        _click(app, "review_dismiss")
    assert "not flagged" in page_text(app) and app.button(key="review_confirm").disabled
    _click(app, "review_missed")
    assert _verdicts(factory)[-1] == ("shore", Verdict.MISSED)
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Alert).where(Alert.source == AlertSource.RANGER)) == 1
    assert not app.exception


def test_review_queue_empty_and_undo_too_late(park: Seeded, factory: sessionmaker[Session]) -> None:
    app = login(open_app(), "ops", PASSWORD)  # ops may review too; south has no rollout model, north has only creek
    app.switch_page("views/review.py").run()
    app.selectbox(key="review_site").select("south").run()
    assert "queue is empty" in page_text(app)
    _click(app, "review_undo")
    assert "no verdict to undo" in page_text(app)


def test_the_site_filter_is_remembered_across_logins_and_the_count_is_the_whole_queue(
    review_park: Seeded, factory: sessionmaker[Session]
) -> None:
    from bearwatch.auth import Actor
    from bearwatch.schema import Role
    from shadow.review_queue import review_queue_and_size

    app = login(open_app(), "ranger", PASSWORD)
    app.switch_page("views/review.py").run()
    app.selectbox(key="review_site").set_value("south").run()
    assert not app.exception and _shown_frame(app).startswith("south / ")
    with factory() as session:
        waiting = review_queue_and_size(session, Actor("ranger", Role.RANGER), utcnow(), site="south")[1]
    assert waiting.count > 0 and any(str(c.value).startswith(f"{waiting} in the queue") for c in app.caption)

    again = login(open_app(), "ranger", PASSWORD)  # a new session: reload, another day
    again.switch_page("views/review.py").run()
    assert again.selectbox(key="review_site").value == "south" and _shown_frame(again).startswith("south / ")


def test_a_queue_past_the_count_cap_shows_at_least_the_cap(
    review_park: Seeded, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bearwatch.auth import Actor
    from bearwatch.schema import Role
    from shadow import review_queue

    with factory() as session:
        waiting = review_queue.review_queue_and_size(session, Actor("ranger", Role.RANGER), utcnow())[1]
    assert not waiting.capped and waiting.count > 2
    monkeypatch.setattr(review_queue, "QUEUE_COUNT_CAP", 2)
    app = login(open_app(), "ranger", PASSWORD)
    app.switch_page("views/review.py").run()
    assert not app.exception
    caption = next(str(c.value) for c in app.caption if " in the queue" in str(c.value))
    assert caption.startswith("2+ in the queue") and "the next" in caption, caption
