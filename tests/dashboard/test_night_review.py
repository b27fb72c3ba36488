"""The night shift on the Review page and the History page under AppTest, on SQLite and
PostgreSQL: next/previous move through the queue without deciding; a burst of flags at
one camera is dismissed only after a confirmation, one verdict row per frame, and undo
takes the whole burst back; the dark theme toggle is remembered for the user in a new
session; History filters frames and opens one for a verdict."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest

from bearwatch.schema import (
    Alert,
    AlertSource,
    AlertStatus,
    Decision,
    Frame,
    User,
    Verdict,
)
from tests.dashboard.conftest import login, open_app, page_text
from tests.dashboard.night import BURST, add_creek_burst
from tests.dashboard.seed import PASSWORD, Seeded


@pytest.fixture
def night_park(park: Seeded, factory: sessionmaker[Session], tmp_path: Path) -> Seeded:
    add_creek_burst(factory, park, tmp_path / "frames")
    return park


def _shown_frame(app: AppTest) -> str:
    """'site / camera' and the time of the frame on screen."""
    return next(str(m.value) for m in app.markdown if " / " in str(m.value) and "**" in str(m.value))


def _creek_verdicts(factory: sessionmaker[Session], park: Seeded) -> list[Verdict]:
    with factory() as session:
        return list(session.scalars(sa.select(Decision.verdict).join(Frame, Frame.id == Decision.frame_id)
                                    .where(Frame.camera_id == park.camera_ids["creek"])))


def _creek_alerts(factory: sessionmaker[Session], park: Seeded) -> list[AlertStatus]:
    with factory() as session:
        return list(session.scalars(sa.select(Alert.status).where(
            Alert.camera_id == park.camera_ids["creek"], Alert.source == AlertSource.MODEL)))


def _click(app: AppTest, key: str) -> AppTest:
    app.button(key=key).click()
    return app.run()


def test_next_and_previous_move_through_the_queue_without_deciding(night_park: Seeded, factory: sessionmaker[Session]) -> None:
    app = login(open_app(), "ranger", PASSWORD)
    app.switch_page("views/review.py").run()
    assert not app.exception
    first = _shown_frame(app)
    assert app.button(key="review_prev").disabled and not app.button(key="review_next").disabled
    assert "frame 1 of the" in page_text(app) and "**n** next" in page_text(app), "the key legend is on the page"
    _click(app, "review_next")
    second = _shown_frame(app)
    assert second != first and "frame 2 of the" in page_text(app)
    _click(app, "review_next")
    third = _shown_frame(app)
    assert third not in (first, second)
    _click(app, "review_prev")
    assert _shown_frame(app) == second, "previous goes back"
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Decision)) == 0, "moving decides nothing"
    # A verdict on the frame in the middle of the queue: the one now in its place is shown.
    _click(app, "review_dismiss")
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Decision)) == 1
    assert "frame 2 of the" in page_text(app) and _shown_frame(app) != second


def test_a_burst_is_dismissed_after_a_confirmation_one_row_per_frame_and_undone_whole(
    night_park: Seeded, factory: sessionmaker[Session]
) -> None:
    app = login(open_app(), "ranger", PASSWORD)
    app.switch_page("views/review.py").run()
    assert "north / creek" in _shown_frame(app), "the held alert comes first"
    held = _creek_alerts(factory, night_park)
    assert held and set(held) == {AlertStatus.PENDING}  # one or two: the cooldown joins flags near each other
    text = page_text(app)
    assert f"This camera has {BURST - 1} more open flag(s) within 10 min" in text
    assert app.button(key="review_burst").label == f"Dismiss all {BURST} (b)"

    _click(app, "review_burst")  # the first step only asks
    assert _creek_verdicts(factory, night_park) == [], "nothing is dismissed before the yes"
    assert f"Dismiss all {BURST} open flags of creek" in page_text(app)
    _click(app, "review_burst_no")
    assert _creek_verdicts(factory, night_park) == [] and not any(b.key == "review_burst_yes" for b in app.button)

    _click(app, "review_burst")
    _click(app, "review_burst_yes")
    assert _creek_verdicts(factory, night_park) == [Verdict.DISMISS] * BURST, "one verdict row per frame"
    assert _creek_alerts(factory, night_park) == [AlertStatus.SUPPRESSED] * len(held), "held alerts suppressed, as dismisses would"
    assert f"dismissed {BURST} frame(s), one verdict each" in page_text(app)
    assert "queue is empty" in page_text(app), "the burst left the queue (north's only flags)"

    _click(app, "review_undo")
    assert _creek_verdicts(factory, night_park) == [], "undo right after a burst takes it all back"
    assert _creek_alerts(factory, night_park) == held
    assert f"the burst dismiss of {BURST} frame(s)" in page_text(app)
    assert not app.exception


def test_the_dark_theme_is_remembered_for_the_user_in_a_new_session(night_park: Seeded, factory: sessionmaker[Session]) -> None:
    app = login(open_app(), "ranger", PASSWORD)
    app.switch_page("views/review.py").run()
    assert app.toggle(key="bw_dark").value is False
    assert not any("#0e1117" in str(h.value) for h in app.html), "light by default"
    app.toggle(key="bw_dark").set_value(True).run()
    assert any("#0e1117" in str(h.value) for h in app.html), "the dark style sheet is on the page"
    with factory() as session:
        assert session.scalar(sa.select(User.preferences).where(User.name == "ranger")).get("theme") == "dark"

    again = login(open_app(), "ranger", PASSWORD)  # a new session for the same user
    again.switch_page("views/review.py").run()
    assert again.toggle(key="bw_dark").value is True
    assert any("#0e1117" in str(h.value) for h in again.html)
    ops = login(open_app(), "ops", PASSWORD)  # another user keeps their own
    assert ops.toggle(key="bw_dark").value is False
    again.button(key="logout").click().run()  # and so does the next user in the same tab
    login(again, "ops", PASSWORD)
    assert "Logged in as **ops**" in page_text(again) and again.toggle(key="bw_dark").value is False


def test_history_filters_frames_and_opens_one_for_a_verdict(night_park: Seeded, factory: sessionmaker[Session]) -> None:
    app = login(open_app(), "ranger", PASSWORD)
    app.switch_page("views/history.py").run()
    assert not app.exception
    table = app.dataframe[0].value
    assert len(table) == 10, "every seeded frame: 2 of creek, gate and shore, and creek's 4 more flags"
    assert list(table["captured"]) == sorted(table["captured"], reverse=True), "newest first"
    app.selectbox(key="history_site").select("north").run()
    app.selectbox(key="history_camera").select("creek").run()
    assert set(app.dataframe[0].value["camera"]) == {"creek"} and len(app.dataframe[0].value) == 6
    app.slider(key="history_band").set_value((0.9, 1.0)).run()
    assert list(app.dataframe[0].value["score"]) == [0.93]
    app.slider(key="history_band").set_value((0.0, 1.0)).run()
    app.selectbox(key="history_verdict").select("unreviewed").run()
    assert len(app.dataframe[0].value) == 6

    frame_id = int(app.dataframe[0].value["id"][1])
    app.selectbox(key="history_open").select(frame_id).run()
    _click(app, "history_dismiss")
    with factory() as session:
        assert session.scalar(sa.select(Decision.verdict).where(Decision.frame_id == frame_id)) is Verdict.DISMISS
    assert f"frame {frame_id}: dismiss" in page_text(app)
    assert len(app.dataframe[0].value) == 5, "the frame is reviewed now"
    app.selectbox(key="history_verdict").select("dismissed").run()
    table = app.dataframe[0].value
    assert list(table["id"]) == [frame_id] and "dismiss by ranger" in table["verdict"][0]
    assert not app.exception
