"""The demo's dashboard login: a fresh park gets an admin `demo` with a random password,
printed once; a park that has users gets none (tests/bearwatch/test_demo.py runs the demo
on a park it made before)."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor
from bearwatch.demo.run import ensure_demo_user
from bearwatch.schema import Role, User
from bearwatch.users import authenticate


def test_a_fresh_demo_park_gets_one_admin_login_that_works(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        line = ensure_demo_user(session)
    match = re.fullmatch(r"dashboard login: user demo, password (\S{12,})", line)
    assert match, line
    with factory.begin() as session:
        assert authenticate(session, "demo", match.group(1)) == Actor("demo", Role.ADMIN)
        again = ensure_demo_user(session)
    assert again == "dashboard login: a user from `bearwatch user list`"
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 1
