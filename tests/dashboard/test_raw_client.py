"""Attacks from a client that skips the UI, against a real dashboard process."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.dashboard.raw_client import RawClient, click, text
from tests.dashboard.seed import PASSWORD, seed_park
from tests.dashboard.server import running_dashboard

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the throttle's DB tests run on both


@pytest.fixture
def dashboard(factory: sessionmaker[Session], database_url: str, tmp_path: Path) -> Iterator[str]:
    seed_park(factory, tmp_path / "frames")
    with running_dashboard({"BEARWATCH_DATABASE_URL": database_url, "BEARWATCH_DATA_DIR": str(tmp_path)}) as url:
        yield url


def _try_login(client: RawClient, name: str, password: str) -> list[str]:
    form = client.run()
    ids = form.widget_ids
    assert {"User name", "Password", "Log in"} <= set(ids), f"not the login form: {ids}"
    page = client.run([text(ids["User name"], name), text(ids["Password"], password), click(ids["Log in"])])
    return page.alerts


def _wait_s(alert: str) -> float:
    match = re.fullmatch(r"Too many failed logins; try again in (\d+) (s|min)\.", alert)
    return 0.0 if match is None else float(match[1]) * (60 if match[2] == "min" else 1)


def test_clearing_the_cache_from_a_raw_client_does_not_reset_the_login_throttle(dashboard: str) -> None:
    with RawClient(dashboard) as client:
        waits = []
        for _ in range(60):  # guesses as fast as the throttle lets them through
            client.clear_cache()  # before every guess: it used to empty the throttle
            alerts = _try_login(client, "ranger", "wrong password!")
            assert len(alerts) == 1 and (alerts[0] == "Wrong user name or password." or _wait_s(alerts[0])), alerts
            waits.append(_wait_s(alerts[0]))
            if waits[-1] >= 4:  # past the free failures, the delay has doubled once
                break
            # A guess made while told to wait is not tried (nor counted): a patient attacker
            # waits it out, and the next wrong guess must double the delay. Without this
            # wait the test depended on the server answering slower than the delay.
            time.sleep(waits[-1])
        assert waits[-1] >= 4, f"the throttle never slowed the guesses down: {waits}"
        client.clear_cache()
        assert _wait_s(_try_login(client, "ranger", PASSWORD)[0]) > 0, "the right password waits too"
