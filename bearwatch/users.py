"""Dashboard users: adding them, their roles, their passwords, and logging in.

Passwords are hashed with Argon2id (argon2-cffi's PasswordHasher, its default
parameters). Managing users is an admin act: when an ``actor`` is given (the
dashboard), ``require_role`` checks it here, in the service, not only in the UI. The
CLI passes no actor: whoever can run it already holds the database credentials.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from bearwatch.auth import Actor, require_role
from bearwatch.errors import AlreadyExists, BearwatchError, NotFound, PermissionDenied
from bearwatch.schema import Decision, Role, User

MIN_PASSWORD_LENGTH = 10
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")


class InvalidUserInput(BearwatchError):
    """A user name or password that cannot be used."""


@dataclass(frozen=True)
class UserInfo:
    name: str
    role: Role
    has_password: bool
    created_at: datetime
    disabled: bool = False


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Verified against when the user is unknown, so a wrong name costs as long as a
    # wrong password and the response time does not tell which names exist.
    return _hasher().hash("bearwatch-no-such-user")


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise InvalidUserInput(
            f"invalid user name {name!r}: use 1-100 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidUserInput(f"password too short: use at least {MIN_PASSWORD_LENGTH} characters")


@dataclass(frozen=True)
class NewPassword:
    """A checked password's Argon2 hash, made before the write transaction opens: hashing
    takes a while, and on SQLite that transaction holds the one write lock meanwhile."""

    hash: str


def new_password(password: str) -> NewPassword:
    _check_password(password)
    return NewPassword(_hasher().hash(password))


def _hashed(password: str | NewPassword) -> str:
    return password.hash if isinstance(password, NewPassword) else new_password(password).hash


def _require_admin(actor: Actor | None, action: str) -> None:
    if actor is not None:
        require_role(actor, Role.ADMIN, action)


def _get(session: Session, name: str) -> User:
    user = session.scalar(sa.select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"no user named {name!r}; see `bearwatch user list`")
    return user


def add_user(
    session: Session, name: str, role: Role, password: str | NewPassword, *, actor: Actor | None = None
) -> UserInfo:
    _require_admin(actor, "add users")
    check_name(name)
    hashed = _hashed(password)
    if session.scalar(sa.select(User.id).where(User.name == name)) is not None:
        raise AlreadyExists(f"a user named {name!r} already exists; change it with `bearwatch user set-role` or `passwd`")
    user = User(name=name, role=role, password_hash=hashed)
    session.add(user)
    session.flush()
    return _info(user)


def set_role(session: Session, name: str, role: Role, *, actor: Actor | None = None) -> UserInfo:
    _require_admin(actor, "change user roles")
    user = _get(session, name)
    user.role = role
    session.flush()
    return _info(user)


def set_password(session: Session, name: str, password: str | NewPassword, *, actor: Actor | None = None) -> None:
    """An admin may set anyone's password; a user may set their own."""
    if actor is not None and actor.name != name:
        require_role(actor, Role.ADMIN, "set another user's password")
    hashed = _hashed(password)
    user = _get(session, name)
    user.password_hash = hashed
    user.session_epoch += 1  # sessions opened with the old password end
    session.flush()


def list_users(session: Session, *, actor: Actor | None = None) -> tuple[UserInfo, ...]:
    _require_admin(actor, "list users")
    return tuple(_info(u) for u in session.scalars(sa.select(User).order_by(User.name)))


def authenticate(session: Session, name: str, password: str) -> Actor | None:
    """The user's Actor when the password matches, else None. Unknown users and users
    without a password cost one hash verification too."""
    user = session.scalar(sa.select(User).where(User.name == name)) if name else None
    stored = user.password_hash if user is not None and user.password_hash else None
    try:
        _hasher().verify(stored or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or stored is None or user.disabled_at is not None:
        return None
    if _hasher().check_needs_rehash(stored):
        user.password_hash = _hasher().hash(password)
        session.flush()
    return Actor(user.name, user.role)


def _info(user: User) -> UserInfo:
    return UserInfo(
        name=user.name, role=user.role, has_password=bool(user.password_hash), created_at=user.created_at,
        disabled=user.disabled_at is not None,
    )


def disable_user(session: Session, name: str, now: datetime, *, actor: Actor | None = None) -> UserInfo:
    """The user can no longer log in or act, and their open dashboard sessions end on
    their next page load. Their verdicts stay, citing them."""
    _require_admin(actor, "disable users")
    if actor is not None and actor.name == name:
        raise PermissionDenied("you cannot disable yourself; ask another admin")
    user = _get(session, name)
    if user.disabled_at is None:
        user.disabled_at = now
        user.session_epoch += 1
    session.flush()
    return _info(user)


def enable_user(session: Session, name: str, *, actor: Actor | None = None) -> UserInfo:
    _require_admin(actor, "enable users")
    user = _get(session, name)
    user.disabled_at = None
    session.flush()
    return _info(user)


def remove_user(session: Session, name: str, *, actor: Actor | None = None) -> None:
    """Delete a user who has given no verdict; one who has stays as the evidence's
    author and can only be disabled."""
    _require_admin(actor, "remove users")
    if actor is not None and actor.name == name:
        raise PermissionDenied("you cannot remove yourself; ask another admin")
    user = _get(session, name)
    verdicts = session.scalar(sa.select(sa.func.count()).select_from(Decision).where(Decision.reviewer_id == user.id))
    if verdicts:
        raise PermissionDenied(
            f"{name} has given {verdicts} verdicts, which cite them as evidence: disable the user instead"
        )
    session.delete(user)
    session.flush()


def preferences(session: Session, name: str) -> dict[str, Any]:
    """The user's own dashboard choices; {} for a name without a row (single sign-on)."""
    return dict(session.scalar(sa.select(User.preferences).where(User.name == name)) or {})


def set_preference(session: Session, name: str, key: str, value: Any) -> None:
    """Remember one choice of the user's; nothing for a name without a row."""
    user = session.scalar(sa.select(User).where(User.name == name))
    if user is not None and user.preferences.get(key) != value:
        user.preferences = {**user.preferences, key: value}  # a new dict: the JSON column sees the change
        session.flush()
