"""Single sign-on (OIDC, through Streamlit's st.login): which bearwatch role an
identity provider's claims give. Pure functions over plain data; the dashboard reads
the mapping from the ``[bearwatch_sso]`` section of Streamlit's secrets.toml."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bearwatch.errors import ConfigError
from bearwatch.schema import Role

_HIGHEST_FIRST = (Role.ADMIN, Role.OPS, Role.RANGER)


@dataclass(frozen=True)
class RoleClaimMapping:
    """``roles_claim`` names the claim holding the user's groups (a list or one
    string); each role lists the group values that grant it. ``name_claim`` is the claim
    used as the user's name in ledgers and verdicts."""

    roles_claim: str = "groups"
    name_claim: str = "email"
    admin: frozenset[str] = frozenset()
    ops: frozenset[str] = frozenset()
    ranger: frozenset[str] = frozenset()
    provider: str | None = None  # the [auth.<provider>] section, when there are several

    def groups_for(self, role: Role) -> frozenset[str]:
        return {Role.ADMIN: self.admin, Role.OPS: self.ops, Role.RANGER: self.ranger}[role]


def mapping_from_config(section: Mapping[str, Any]) -> RoleClaimMapping:
    def groups(key: str) -> frozenset[str]:
        value = section.get(key, ())
        if isinstance(value, str):
            value = [value]
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"[bearwatch_sso] {key} must be a list of group names")
        return frozenset(value)

    mapping = RoleClaimMapping(
        roles_claim=str(section.get("roles_claim", "groups")),
        name_claim=str(section.get("name_claim", "email")),
        admin=groups("admin"), ops=groups("ops"), ranger=groups("ranger"),
        provider=section.get("provider"),
    )
    if not (mapping.admin or mapping.ops or mapping.ranger):
        raise ConfigError("[bearwatch_sso] grants no role: list group names under admin, ops and/or ranger")
    return mapping


def role_from_claims(claims: Mapping[str, Any], mapping: RoleClaimMapping) -> Role | None:
    """The highest role any of the user's groups grants; None when none does (that
    user sees nothing)."""
    value = claims.get(mapping.roles_claim)
    if isinstance(value, str):
        held = {part for part in value.replace(",", " ").split() if part}
    elif isinstance(value, (list, tuple, set, frozenset)):
        held = {str(v) for v in value}
    else:
        return None
    for role in _HIGHEST_FIRST:
        if held & mapping.groups_for(role):
            return role
    return None


def user_name_from_claims(claims: Mapping[str, Any], mapping: RoleClaimMapping) -> str | None:
    for key in (mapping.name_claim, "email", "preferred_username", "sub"):
        value = claims.get(key)
        if isinstance(value, str) and value:
            return value
    return None
