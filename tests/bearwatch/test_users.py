"""Users, passwords and who may manage them; `bearwatch user ...` as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor
from bearwatch.errors import AlreadyExists, NotFound, PermissionDenied
from bearwatch.schema import Role, User
from bearwatch.users import InvalidUserInput, add_user, authenticate, list_users, set_password, set_role
from tests.conftest import run_cli

ADMIN = Actor("ada", Role.ADMIN)
RANGER = Actor("rick", Role.RANGER)
PW = "a long enough password"


def test_password_is_stored_hashed_and_checked(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        add_user(session, "rick", Role.RANGER, PW)
    with factory.begin() as session:
        stored = session.scalar(sa.select(User.password_hash).where(User.name == "rick"))
        assert stored is not None and stored.startswith("$argon2id$") and PW not in stored
        assert authenticate(session, "rick", PW) == Actor("rick", Role.RANGER)
        assert authenticate(session, "rick", PW + "x") is None
        assert authenticate(session, "nobody", PW) is None
        assert authenticate(session, "", "") is None


def test_a_user_without_a_password_cannot_log_in_with_one(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        session.add(User(name="sso-only", role=Role.OPS, password_hash=None))
    with factory.begin() as session:
        assert authenticate(session, "sso-only", "") is None
        assert authenticate(session, "sso-only", "bearwatch-no-such-user") is None  # not even the dummy's password


def test_only_admins_manage_users(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        add_user(session, "rick", Role.RANGER, PW, actor=ADMIN)
        with pytest.raises(PermissionDenied, match="rick \\(ranger\\) may not add users: it needs the admin role"):
            add_user(session, "eve", Role.ADMIN, PW, actor=RANGER)
        with pytest.raises(PermissionDenied):
            set_role(session, "rick", Role.ADMIN, actor=RANGER)
        with pytest.raises(PermissionDenied):
            list_users(session, actor=RANGER)
        with pytest.raises(PermissionDenied):
            set_password(session, "ada", PW, actor=RANGER)
        set_password(session, "rick", PW + "!", actor=RANGER)  # one's own password
    with factory() as session:
        assert [u.name for u in list_users(session, actor=ADMIN)] == ["rick"]
        assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 1, "eve was not added"
        assert authenticate(session, "rick", PW + "!") is not None


def test_bad_names_passwords_and_duplicates_are_refused(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        add_user(session, "rick", Role.RANGER, PW)
        with pytest.raises(AlreadyExists):
            add_user(session, "rick", Role.OPS, PW)
        with pytest.raises(InvalidUserInput, match="too short"):
            add_user(session, "sam", Role.OPS, "short")
        with pytest.raises(InvalidUserInput, match="invalid user name"):
            add_user(session, "sam smith", Role.OPS, PW)
        with pytest.raises(NotFound):
            set_role(session, "nobody", Role.OPS)


def _cli(args: list[str], stdin: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bearwatch", *args], input=stdin, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def test_user_commands_round_trip(data_env: dict[str, str], factory: sessionmaker[Session]) -> None:
    assert run_cli("init", env=data_env).returncode == 0
    added = _cli(["user", "add", "ada", "--role", "admin", "--password-stdin"], PW + "\n", data_env)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "user ada added (admin)" and PW not in added.stdout + added.stderr
    short = _cli(["user", "add", "bob", "--role", "ranger", "--password-stdin"], "short\n", data_env)
    assert short.returncode == 2 and "password too short" in short.stderr
    assert _cli(["user", "set-role", "ada", "ops"], "", data_env).stdout.strip() == "user ada is now ops"
    assert _cli(["user", "passwd", "ada", "--password-stdin"], "another long one\n", data_env).returncode == 0
    listed = _cli(["user", "list"], "", data_env)
    assert listed.returncode == 0 and listed.stdout.startswith("ada\tops\tpassword\t")
    with factory.begin() as session:
        assert authenticate(session, "ada", "another long one") == Actor("ada", Role.OPS)
        assert authenticate(session, "ada", PW) is None
    bad_role = _cli(["user", "add", "x", "--role", "boss", "--password-stdin"], PW + "\n", data_env)
    assert bad_role.returncode == 2 and "boss" in bad_role.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_password_prompt_asks_twice(data_env: dict[str, str], factory: sessionmaker[Session]) -> None:
    assert run_cli("init", env=data_env).returncode == 0
    added = _cli(["user", "add", "ada", "--role", "admin"], f"{PW}\n{PW}\n", data_env)
    assert added.returncode == 0, added.stderr
    assert "Repeat for confirmation" in added.stdout and PW not in added.stdout
    with factory.begin() as session:
        assert authenticate(session, "ada", PW) is not None


def test_user_disable_enable_and_remove_from_the_cli(data_env: dict[str, str], factory: sessionmaker[Session]) -> None:
    assert run_cli("init", env=data_env).returncode == 0
    for name in ("ada", "rick"):
        assert _cli(["user", "add", name, "--role", "ranger", "--password-stdin"], PW + "\n", data_env).returncode == 0
    disabled = _cli(["user", "disable", "rick"], "", data_env)
    assert disabled.returncode == 0 and "sessions end" in disabled.stdout
    assert "rick\tranger\tpassword\t" in (listed := _cli(["user", "list"], "", data_env).stdout) and "DISABLED" in listed
    with factory.begin() as session:
        assert authenticate(session, "rick", PW) is None, "a disabled user cannot log in"
    refused = _cli(["verdict", "1", "confirm", "--user", "rick"], "", data_env)
    assert refused.returncode != 0 and "disabled" in refused.stderr, "nor act in the CLI"
    assert _cli(["user", "enable", "rick"], "", data_env).returncode == 0
    with factory.begin() as session:
        assert authenticate(session, "rick", PW) == Actor("rick", Role.RANGER)
    assert _cli(["user", "remove", "ada"], "", data_env).stdout.strip() == "user ada removed"
    gone = _cli(["user", "remove", "ada"], "", data_env)
    assert gone.returncode == 2 and "no user named 'ada'" in gone.stderr
