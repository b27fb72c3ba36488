"""Logging in: the throttle kept in the database, disabled users, sessions that end."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor, actor_for_user
from bearwatch.errors import PermissionDenied
from bearwatch.logins import ADDRESS, NAME, PAIR, attempt_login, current_login, delay_s
from bearwatch.schema import LoginFailures, Role
from bearwatch.users import add_user, disable_user, enable_user, remove_user, set_password

PW = "a long enough password"
T0 = datetime(2026, 7, 1, 22, 0, tzinfo=timezone.utc)
ATTACKER, RANGER_DESK = "203.0.113.9", "10.0.0.5"


@pytest.fixture
def rick(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        add_user(session, "rick", Role.RANGER, PW)


def _fail(factory: sessionmaker[Session], times: int, name: str, address: str, start: datetime) -> datetime:
    """``times`` wrong passwords, each as soon as the throttle allows; the time after."""
    now = start
    for _ in range(times):
        attempt = attempt_login(factory, name, "wrong password!", address, now)
        if attempt.wait_s:
            now += timedelta(seconds=attempt.wait_s)
            attempt = attempt_login(factory, name, "wrong password!", address, now)
        assert attempt.session is None and attempt.wait_s == 0
    return now


def test_the_delay_doubles_past_the_free_failures_up_to_a_cap() -> None:
    assert [delay_s(PAIR, n) for n in range(1, 9)] == [0, 0, 0, 0, 0, 2, 4, 8]
    assert delay_s(PAIR, 100) == PAIR.max_delay_s == 900
    assert delay_s(NAME, 10_000) == NAME.max_delay_s == 60, "an attacker can hold a real user back a minute at most"


def test_repeated_failures_slow_that_client_and_name_and_a_success_clears_them(
    factory: sessionmaker[Session], rick: None
) -> None:
    now = _fail(factory, 7, "rick", ATTACKER, T0)
    refused = attempt_login(factory, "rick", PW, ATTACKER, now)
    assert refused.session is None and refused.wait_s == pytest.approx(4), "even the right password waits"
    later = now + timedelta(seconds=4)
    ok = attempt_login(factory, "rick", PW, ATTACKER, later)
    assert ok.session is not None and ok.session.actor == Actor("rick", Role.RANGER)
    assert attempt_login(factory, "rick", "wrong password!", ATTACKER, later).wait_s == 0, "the pair was cleared"


def test_an_attacker_elsewhere_cannot_lock_the_ranger_out_for_long(
    factory: sessionmaker[Session], rick: None
) -> None:
    # Far past every free failure: the attacker's own address and pair wait the full cap.
    now = _fail(factory, NAME.free_failures + 6, "rick", ATTACKER, T0)
    assert attempt_login(factory, "rick", PW, ATTACKER, now).wait_s == pytest.approx(PAIR.max_delay_s)
    from_desk = attempt_login(factory, "rick", PW, RANGER_DESK, now)
    assert 0 < from_desk.wait_s <= NAME.max_delay_s
    ok = attempt_login(factory, "rick", PW, RANGER_DESK, now + timedelta(seconds=NAME.max_delay_s))
    assert ok.session is not None


def test_one_client_spraying_names_is_slowed_by_its_address(factory: sessionmaker[Session]) -> None:
    now = T0
    for i in range(ADDRESS.free_failures + 1):
        attempt = attempt_login(factory, f"guess{i}", "wrong password!", ATTACKER, now)
        assert attempt.wait_s == 0 and attempt.session is None
    assert attempt_login(factory, "a-new-name", "wrong password!", ATTACKER, now).wait_s > 0
    assert attempt_login(factory, "a-new-name", "wrong password!", RANGER_DESK, now).wait_s == 0


def test_failures_are_forgotten_and_the_table_stays_bounded(factory: sessionmaker[Session]) -> None:
    _fail(factory, 3, "x" * 5000, ATTACKER, T0)  # a huge typed name is stored bounded
    _fail(factory, 1, "someone", RANGER_DESK, T0 + timedelta(hours=2))
    with factory() as session:
        keys = session.scalars(sa.select(LoginFailures.key)).all()
    assert sorted(keys) == sorted([f"pair:{RANGER_DESK}|someone", f"address:{RANGER_DESK}", "name:someone"])


def test_a_disabled_user_cannot_log_in_or_act_and_is_enabled_again(factory: sessionmaker[Session], rick: None) -> None:
    with factory.begin() as session:
        before = current_login(session, "rick")
        disabled = disable_user(session, "rick", T0, actor=Actor("ada", Role.ADMIN))
    assert before is not None and disabled.disabled
    assert attempt_login(factory, "rick", PW, RANGER_DESK, T0).session is None
    with factory() as session:
        assert current_login(session, "rick") is None
        with pytest.raises(PermissionDenied, match="disabled"):
            actor_for_user(session, "rick")  # the CLI's --user
    with factory.begin() as session:
        enable_user(session, "rick")
    attempt = attempt_login(factory, "rick", PW, RANGER_DESK, T0)
    assert attempt.session is not None and attempt.session.epoch == before.epoch + 1, "old sessions stay ended"


def test_a_password_change_ends_sessions_opened_before_it(factory: sessionmaker[Session], rick: None) -> None:
    session_before = attempt_login(factory, "rick", PW, RANGER_DESK, T0).session
    with factory.begin() as session:
        set_password(session, "rick", "another long password")
    with factory() as session:
        now = current_login(session, "rick")
    assert session_before is not None and now is not None and now.epoch != session_before.epoch


def test_only_an_admin_manages_users_and_not_themselves(factory: sessionmaker[Session], rick: None) -> None:
    ranger, admin = Actor("rick", Role.RANGER), Actor("ada", Role.ADMIN)
    with factory.begin() as session:
        add_user(session, "ada", Role.ADMIN, PW)
    with factory.begin() as session, pytest.raises(PermissionDenied):
        disable_user(session, "ada", T0, actor=ranger)
    with factory.begin() as session, pytest.raises(PermissionDenied, match="yourself"):
        disable_user(session, "ada", T0, actor=admin)
    with factory.begin() as session, pytest.raises(PermissionDenied, match="yourself"):
        remove_user(session, "ada", actor=admin)
    with factory.begin() as session:
        remove_user(session, "rick", actor=admin)
    with factory() as session:
        assert current_login(session, "rick") is None
