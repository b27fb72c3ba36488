"""The Users page's read: every user with role and state (bearwatch.users.list_users,
which lets only admins see them)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bearwatch.auth import Actor
from bearwatch.users import UserInfo, list_users


def user_rows(session: Session, actor: Actor) -> tuple[UserInfo, ...]:
    return list_users(session, actor=actor)
