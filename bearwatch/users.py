"""Dashboard users: adding them, their roles, their passwords, and logging in.

Passwords are hashed with Argon2id (argon2-cffi's PasswordHasher, its default
parameters). Managing users is an admin act: when an ``actor`` is given (the
dashboard), ``require_role`` checks it here, in the service, not only in the UI. The
CLI passes no actor: whoever can run it already holds the database credentials.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from bearwatch.auth import Actor, require_role
from bearwatch.errors import AlreadyExists, BearwatchError, NotFound
from bearwatch.schema import Role, User

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


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Verified against when the user is unknown, so a wrong name costs as long as a
    # wrong password and the response time does not tell which names exist.
    return _hasher().hash("bearwatch-no-such-user")


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise InvalidUserInput(
            f"invalid user name {name!r}: use 1-100 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidUserInput(f"password too short: use at least {MIN_PASSWORD_LENGTH} characters")


def _require_admin(actor: Actor | None, action: str) -> None:
    if actor is not None:
        require_role(actor, Role.ADMIN, action)


def _get(session: Session, name: str) -> User:
    user = session.scalar(sa.select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"no user named {name!r}; see `bearwatch user list`")
    return user


def add_user(session: Session, name: str, role: Role, password: str, *, actor: Actor | None = None) -> UserInfo:
    _require_admin(actor, "add users")
    _check_name(name)
    _check_password(password)
    if session.scalar(sa.select(User.id).where(User.name == name)) is not None:
        raise AlreadyExists(f"a user named {name!r} already exists; change it with `bearwatch user set-role` or `passwd`")
    user = User(name=name, role=role, password_hash=_hasher().hash(password))
    session.add(user)
    session.flush()
    return _info(user)


def set_role(session: Session, name: str, role: Role, *, actor: Actor | None = None) -> UserInfo:
    _require_admin(actor, "change user roles")
    user = _get(session, name)
    user.role = role
    session.flush()
    return _info(user)


def set_password(session: Session, name: str, password: str, *, actor: Actor | None = None) -> None:
    """An admin may set anyone's password; a user may set their own."""
    if actor is not None and actor.name != name:
        require_role(actor, Role.ADMIN, "set another user's password")
    _check_password(password)
    _get(session, name).password_hash = _hasher().hash(password)
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
    if user is None or stored is None:
        return None
    if _hasher().check_needs_rehash(stored):
        user.password_hash = _hasher().hash(password)
        session.flush()
    return Actor(user.name, user.role)


def _info(user: User) -> UserInfo:
    return UserInfo(name=user.name, role=user.role, has_password=bool(user.password_hash), created_at=user.created_at)


class LoginThrottle:
    """Failed logins per user name: after ``max_failures`` within ``window_s`` seconds,
    that name is refused until the oldest failure leaves the window. Unknown names are
    counted the same way, so the answer tells nothing about which names exist. One per
    dashboard process; ``now`` is a monotonic clock reading, passed in."""

    MAX_NAMES = 10_000  # bounded memory under a spray of made-up names

    def __init__(self, max_failures: int = 5, window_s: float = 300.0) -> None:
        self.max_failures, self.window_s = max_failures, window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, name: str, now: float) -> deque[float]:
        times = self._failures.get(name, deque())
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return times

    def wait_s(self, name: str, now: float) -> float:
        """Seconds until ``name`` may try again; 0 when it may now."""
        with self._lock:
            times = self._recent(name, now)
            return self.window_s - (now - times[0]) if len(times) >= self.max_failures else 0.0

    def failed(self, name: str, now: float) -> None:
        with self._lock:
            if name not in self._failures and len(self._failures) >= self.MAX_NAMES:
                self._failures = {k: v for k, v in self._failures.items() if self._recent(k, now)}
            times = self._recent(name, now)
            times.append(now)
            self._failures[name] = times

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)
