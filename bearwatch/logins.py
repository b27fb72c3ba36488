"""Logging in to the dashboard: the attempt, the throttle, and whether a session may go on.

The throttle: failed logins slow down further tries, kept in the database.

It used to live in the dashboard process's ``st.cache_resource``, and Streamlit honours a
``clear_cache`` message from any websocket client, logged in or not: brute force was
unlimited. Rows in ``login_failures`` cannot be cleared by a client, and every dashboard
process sees the same ones.

Three keys are counted on every failure, each with its own rule:

- the (client address, name) pair: one client guessing one user's password;
- the client address: one client spraying many names;
- the name across all clients: many clients guessing one user's password. Its delay is
  capped low, because it is the only key an attacker elsewhere can push for a real user:
  the real user, from their own address, then waits at most ``max_delay_s`` of that rule.

Past a rule's free failures, each further failure doubles the delay before the next try
(2 s, 4 s, 8 s, ... up to the rule's cap): an exponential delay, never a hard lock. A key's
failures are forgotten ``FORGET_AFTER`` after its last failure; a success clears its pair.

A login that succeeds becomes a dashboard session (``dashboard_sessions``): the browser
keeps a random token (in a signed cookie, dashboard.session_cookie), the row its sha256.
Every page run checks the row (:func:`check_session`): not revoked, the user enabled and
their session_epoch unchanged (a password change or disable moves it on), not idle past
the limit and not older than the lifetime.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor
from bearwatch.db import write_transaction
from bearwatch.schema import DashboardSession, LoginFailures, User
from bearwatch.users import authenticate

FIRST_DELAY_S = 2.0
FORGET_AFTER = timedelta(hours=1)
MAX_KEY_PART = 150  # a typed name is untrusted input: bound what is stored


@dataclass(frozen=True)
class Rule:
    scope: str
    free_failures: int
    max_delay_s: float


PAIR = Rule("pair", free_failures=5, max_delay_s=900.0)
ADDRESS = Rule("address", free_failures=20, max_delay_s=900.0)
NAME = Rule("name", free_failures=20, max_delay_s=60.0)


def _keys(name: str, address: str) -> dict[str, Rule]:
    name, address = name[:MAX_KEY_PART], address[:MAX_KEY_PART]
    return {f"pair:{address}|{name}": PAIR, f"address:{address}": ADDRESS, f"name:{name}": NAME}


def delay_s(rule: Rule, failures: int) -> float:
    """Seconds a key waits after its ``failures``-th failure."""
    over = failures - rule.free_failures
    return 0.0 if over <= 0 else min(rule.max_delay_s, FIRST_DELAY_S * 2.0 ** min(over - 1, 30))


def wait_s(session: Session, name: str, address: str, now: datetime) -> float:
    """Seconds until ``name`` may try again from ``address``; 0 when it may now."""
    rows = session.scalars(sa.select(LoginFailures).where(LoginFailures.key.in_(_keys(name, address))))
    return max([0.0, *((row.blocked_until - now).total_seconds() for row in rows)])


def record_failure(session: Session, name: str, address: str, now: datetime) -> None:
    """Count one failed login on each key. Run it in a write transaction."""
    session.execute(sa.delete(LoginFailures).where(LoginFailures.last_failed_at < now - FORGET_AFTER))
    for key, rule in _keys(name, address).items():
        row = session.get(LoginFailures, key)
        if row is None:
            row = LoginFailures(key=key, failures=0)
            session.add(row)
        row.failures += 1
        row.last_failed_at = now
        row.blocked_until = now + timedelta(seconds=delay_s(rule, row.failures))
    session.flush()


def record_success(session: Session, name: str, address: str) -> None:
    """A right password from this client clears its pair; the name and address keys
    keep counting, so an attacker's own account cannot reset their address."""
    pair = next(key for key, rule in _keys(name, address).items() if rule is PAIR)
    session.execute(sa.delete(LoginFailures).where(LoginFailures.key == pair))


@dataclass(frozen=True)
class LoginSession:
    """What a dashboard session keeps of its login: who, and the user's session epoch
    then (a password change or disable bumps it and ends the session)."""

    actor: Actor
    epoch: int


@dataclass(frozen=True)
class LoginAttempt:
    session: LoginSession | None  # None: refused
    wait_s: float = 0.0  # > 0: refused by the throttle before the password was checked


def attempt_login(
    factory: sessionmaker[Session], name: str, password: str, address: str, now: datetime
) -> LoginAttempt:
    """Check the throttle, then the password, and count the outcome. The password hash is
    verified outside any write transaction (Argon2 is slow; on SQLite a write transaction
    holds the whole database)."""
    with factory() as session:
        wait = wait_s(session, name, address, now)
        if wait > 0:
            return LoginAttempt(None, wait)
        actor = authenticate(session, name, password)
        session.commit()  # authenticate may have rehashed an outdated password hash
        epoch = session.scalar(sa.select(User.session_epoch).where(User.name == name)) if actor else None
    if actor is None or epoch is None:
        _count_failure(factory, name, address, now)
        return LoginAttempt(None)
    with write_transaction(factory) as session:
        record_success(session, name, address)
    return LoginAttempt(LoginSession(actor, epoch))


def _count_failure(factory: sessionmaker[Session], name: str, address: str, now: datetime) -> None:
    for tries_left in (1, 0):
        try:
            with write_transaction(factory) as session:
                record_failure(session, name, address, now)
            return
        except sa.exc.IntegrityError:  # two first failures of one key at once (PostgreSQL)
            if not tries_left:
                raise


def current_login(session: Session, name: str) -> LoginSession | None:
    """The user's login as it stands now; None when they were removed or disabled."""
    row = session.execute(
        sa.select(User.name, User.role, User.session_epoch).where(User.name == name, User.disabled_at.is_(None))
    ).first()
    return None if row is None else LoginSession(Actor(row.name, row.role), row.session_epoch)


# Dashboard sessions: what outlives a page load.

TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often (not once a run)


class SessionEnd(str, enum.Enum):
    """Why a dashboard session no longer holds; the dashboard words each for the user."""

    UNKNOWN = "unknown"  # no such session: never was, pruned, or its user was removed
    REVOKED = "revoked"  # logged out, or ended by an idle tab
    DISABLED = "disabled"
    PASSWORD = "password"  # the password changed since (session_epoch moved on)
    EXPIRED = "expired"  # older than the lifetime, however active
    IDLE = "idle"


@dataclass(frozen=True)
class SessionLimits:
    idle: timedelta
    lifetime: timedelta

    @property
    def touch_every(self) -> timedelta:
        # A short idle timeout (a test's, a shared console's) needs a fresher last_seen_at.
        return min(TOUCH_EVERY, self.idle / 10)


@dataclass(frozen=True)
class DashboardLogin:
    """A dashboard session that holds: its row and who it is (the role as of this check)."""

    id: int
    actor: Actor


@dataclass(frozen=True)
class SessionCheck:
    login: DashboardLogin | None
    ended: SessionEnd | None = None  # why not, when login is None


def token_hash(token: str, *, handoff: bool = False) -> str:
    """What the database keeps of a session token. The first token (which travels in the
    handoff URL) hashes apart from the cookie's, so it can never serve as a cookie."""
    return hashlib.sha256(f"{'handoff' if handoff else 'cookie'}:{token}".encode()).hexdigest()


def _new_token() -> str:
    return secrets.token_urlsafe(32)


def open_session(
    factory: sessionmaker[Session], login: LoginSession, address: str, now: datetime, limits: SessionLimits
) -> tuple[DashboardLogin, str] | None:
    """Record a login that :func:`attempt_login` let in; the session and its first token,
    for :func:`exchange_token` only (None if the user was removed meanwhile). Sessions
    past their end are deleted here."""
    token = _new_token()
    with write_transaction(factory) as session:
        _prune(session, now, limits)
        user_id = session.scalar(sa.select(User.id).where(User.name == login.actor.name))
        if user_id is None:
            return None
        row = DashboardSession(user_id=user_id, token_hash=token_hash(token, handoff=True), epoch=login.epoch,
                               created_at=now, last_seen_at=now, client_address=address[:MAX_KEY_PART])
        session.add(row)
        session.flush()
        return DashboardLogin(row.id, login.actor), token


def _prune(session: Session, now: datetime, limits: SessionLimits) -> None:
    session.execute(sa.delete(DashboardSession).where(sa.or_(
        DashboardSession.revoked_at.is_not(None),
        DashboardSession.last_seen_at < now - limits.idle,
        DashboardSession.created_at < now - limits.lifetime,
    )))


def _by(session_id: int | None, token: str | None) -> sa.ColumnElement[bool]:
    if session_id is not None:
        return DashboardSession.id == session_id
    if token is None:
        raise ValueError("name the session by its id or its token")
    return DashboardSession.token_hash == token_hash(token)


def check_session(
    factory: sessionmaker[Session], now: datetime, limits: SessionLimits, *,
    session_id: int | None = None, token: str | None = None,
) -> SessionCheck:
    """Whether the session (by id, or by the token a cookie holds) still holds, and who it
    is now. One SELECT; an UPDATE of last_seen_at when it is older than touch_every."""
    with factory() as session:
        row = session.execute(
            sa.select(DashboardSession.id, DashboardSession.epoch, DashboardSession.created_at,
                      DashboardSession.last_seen_at, DashboardSession.revoked_at,
                      User.name, User.role, User.session_epoch, User.disabled_at)
            .join(User, User.id == DashboardSession.user_id)
            .where(_by(session_id, token))
        ).first()
    if row is None:
        return SessionCheck(None, SessionEnd.UNKNOWN)
    ended = _ended(row, now, limits)
    if ended is not None:
        return SessionCheck(None, ended)
    if now - row.last_seen_at >= limits.touch_every:
        with write_transaction(factory) as session:
            session.execute(sa.update(DashboardSession).where(DashboardSession.id == row.id).values(last_seen_at=now))
    return SessionCheck(DashboardLogin(row.id, Actor(row.name, row.role)))


def _ended(row: Any, now: datetime, limits: SessionLimits) -> SessionEnd | None:
    if row.disabled_at is not None:
        return SessionEnd.DISABLED
    if row.revoked_at is not None:
        return SessionEnd.REVOKED
    if row.epoch != row.session_epoch:
        return SessionEnd.PASSWORD
    if now - row.created_at > limits.lifetime:
        return SessionEnd.EXPIRED
    if now - row.last_seen_at > limits.idle:
        return SessionEnd.IDLE
    return None


def exchange_token(factory: sessionmaker[Session], token: str, now: datetime) -> str | None:
    """A new token for the session ``token`` names, which stops naming it: the first
    token travels in a URL (the cookie handoff), so it must work once only. None when
    ``token`` names no session that is not revoked."""
    fresh = _new_token()
    with write_transaction(factory) as session:
        result = session.execute(
            sa.update(DashboardSession)
            .where(DashboardSession.token_hash == token_hash(token, handoff=True), DashboardSession.revoked_at.is_(None))
            .values(token_hash=token_hash(fresh), last_seen_at=now)
        )
    return fresh if _rowcount(result) == 1 else None


def revoke_session(
    factory: sessionmaker[Session], now: datetime, *, session_id: int | None = None, token: str | None = None
) -> None:
    """End the session (logout): its cookie no longer logs anyone in."""
    with write_transaction(factory) as session:
        session.execute(sa.update(DashboardSession).where(_by(session_id, token), DashboardSession.revoked_at.is_(None))
                        .values(revoked_at=now))


def _rowcount(result: sa.Result[Any]) -> int:
    return int(getattr(result, "rowcount", 0))
