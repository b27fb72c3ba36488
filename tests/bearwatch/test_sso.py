"""Single sign-on claims to roles (a pure function). The OIDC flow itself (st.login
against an identity provider) cannot run here: there is no identity provider on this
machine. The dashboard side is covered in tests/dashboard/test_sso_login.py with
AppTest's simulated st.user."""

from __future__ import annotations

import pytest

from bearwatch.errors import ConfigError
from bearwatch.schema import Role
from bearwatch.sso import mapping_from_config, role_from_claims, user_name_from_claims

MAPPING = mapping_from_config(
    {"roles_claim": "groups", "admin": ["bw-admins"], "ops": ["bw-ops", "park-ops"], "ranger": ["rangers"]}
)


@pytest.mark.parametrize(
    ("claims", "role"),
    [
        ({"groups": ["rangers"]}, Role.RANGER),
        ({"groups": ["rangers", "park-ops"]}, Role.OPS),  # the highest role wins
        ({"groups": ["bw-admins", "rangers"]}, Role.ADMIN),
        ({"groups": "rangers park-ops"}, Role.OPS),  # one string, space separated
        ({"groups": "rangers,bw-admins"}, Role.ADMIN),
        ({"groups": ["hr", "finance"]}, None),  # no bearwatch group: sees nothing
        ({"groups": []}, None),
        ({"roles": ["bw-admins"]}, None),  # a different claim than configured
        ({}, None),
        ({"groups": 42}, None),
    ],
)
def test_role_from_claims(claims: dict[str, object], role: Role | None) -> None:
    assert role_from_claims(claims, MAPPING) == role


def test_a_custom_claim_and_name() -> None:
    mapping = mapping_from_config({"roles_claim": "roles", "name_claim": "preferred_username", "ranger": "night"})
    claims = {"roles": ["night"], "preferred_username": "rick", "email": "rick@park.example"}
    assert role_from_claims(claims, mapping) is Role.RANGER
    assert user_name_from_claims(claims, mapping) == "rick"
    assert user_name_from_claims({"sub": "abc"}, mapping) == "abc"


def test_a_mapping_that_grants_nothing_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="grants no role"):
        mapping_from_config({"roles_claim": "groups"})
    with pytest.raises(ConfigError, match="list of group names"):
        mapping_from_config({"admin": [1, 2]})
