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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor
from bearwatch.db import write_transaction
from bearwatch.schema import LoginFailures, User
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
