"""Who is acting, and what their role allows. Checked in the service functions
(shadow, ingest.cameras, inference.model_versions, bearwatch.users), not only by hiding
buttons in the dashboard."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.errors import NotFound, PermissionDenied
from bearwatch.schema import Role, User

# Each role may do everything the roles below it may do.
_RANK = {Role.RANGER: 0, Role.OPS: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class Actor:
    """A logged-in user (dashboard), a CLI operator, or a system job such as the guard."""

    name: str
    role: Role

    def may(self, role: Role) -> bool:
        return _RANK[self.role] >= _RANK[role]


# The guard and other automatic jobs act in their own name; demotion is always allowed.
GUARD = Actor("guard", Role.OPS)


def require_role(actor: Actor, role: Role, action: str) -> None:
    """Raise PermissionDenied unless ``actor`` has at least ``role``."""
    if not actor.may(role):
        raise PermissionDenied(
            f"{actor.name} ({actor.role.value}) may not {action}: it needs the {role.value} role"
        )


def actor_for_user(session: Session, name: str) -> Actor:
    """The Actor of a registered user (CLI ``--user``, dashboard login)."""
    user = session.scalar(sa.select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"no user named {name!r}; an admin adds one with `bearwatch user add {name} --role ranger|ops|admin`")
    if user.disabled_at is not None:
        raise PermissionDenied(f"user {name!r} is disabled; an admin enables it with `bearwatch user enable {name}`")
    return Actor(user.name, user.role)
