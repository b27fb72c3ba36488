"""Users (admins only): who may log in, with which role; add users, change roles,
disable/enable, remove, reset a password (the services check the role, as for the CLI)."""

from __future__ import annotations

import streamlit as st

from bearwatch.db import write_transaction
from bearwatch.errors import BearwatchError
from bearwatch.schema import Role, utcnow
from bearwatch.users import (
    MIN_PASSWORD_LENGTH,
    add_user,
    check_name,
    disable_user,
    enable_user,
    new_password,
    remove_user,
    set_password,
    set_role,
)
from dashboard.context import factory, page_actor, when
from dashboard.queries.users import user_rows

actor = page_actor(Role.ADMIN)
ROLES = [r.value for r in Role]
ADD_FIELDS = ("new_user_name", "new_user_password")  # emptied once the user is added

st.title("Users")
if flash := st.session_state.pop("users_flash", None):
    st.success(flash)
with factory()() as session:
    users = user_rows(session, actor)  # not cached: it changes with every action here
st.dataframe(
    [
        {"name": u.name, "role": u.role.value, "login": "password" if u.has_password else "single sign-on",
         "state": "disabled" if u.disabled else "active", "added": when(u.created_at)}
        for u in users
    ],
    hide_index=True,
    width="stretch",
)

left, right = st.columns(2)
# Not clear_on_submit: a refused or failed add (database busy) keeps what was typed.
with left, st.form("add_user"):
    st.subheader("Add a user")
    name = st.text_input("Name", key="new_user_name")
    role = st.selectbox("Role", ROLES, key="new_user_role")
    password = st.text_input(
        "Initial password", type="password", key="new_user_password", help=f"at least {MIN_PASSWORD_LENGTH} characters"
    )
    add = st.form_submit_button("Add user")
with right, st.form("change_role"):
    st.subheader("Change a role")
    who = st.selectbox("User", [u.name for u in users], key="role_user")
    new_role = st.selectbox("New role", ROLES, key="role_new")
    change = st.form_submit_button("Change role")

with st.form("manage_user"):
    st.subheader("Manage a user")
    st.caption("Disabling, removing and a new password end the user's open sessions at their next page load.")
    target = st.selectbox("User", [u.name for u in users], key="manage_user")
    reset_to = st.text_input("New password (for Reset password)", type="password", key="manage_password",
                             help=f"at least {MIN_PASSWORD_LENGTH} characters")
    cols = st.columns(4)
    disable = cols[0].form_submit_button("Disable")
    enable = cols[1].form_submit_button("Enable")
    reset = cols[2].form_submit_button("Reset password")
    remove = cols[3].form_submit_button("Remove")

try:
    if target and (disable or enable or remove):
        with write_transaction(factory()) as session:
            if disable:
                disable_user(session, target, utcnow(), actor=actor)
            elif enable:
                enable_user(session, target, actor=actor)
            else:
                remove_user(session, target, actor=actor)
        st.session_state["users_flash"] = f"{target} {'disabled' if disable else 'enabled' if enable else 'removed'}"
        st.rerun()
    if target and reset:
        secret = new_password(reset_to)  # Argon2 before the write lock
        with write_transaction(factory()) as session:
            set_password(session, target, secret, actor=actor)
        del st.session_state["manage_password"]
        st.session_state["users_flash"] = f"password of {target} reset; their open sessions end"
        st.rerun()
    if add:
        check_name(name.strip())
        secret = new_password(password)  # Argon2 before the write lock, not while holding it
        with write_transaction(factory()) as session:
            added = add_user(session, name.strip(), Role(role), secret, actor=actor)
        for key in ADD_FIELDS:
            del st.session_state[key]
        st.session_state["users_flash"] = f"user {added.name} added ({added.role.value})"
        st.rerun()
    if change and who:
        with write_transaction(factory()) as session:
            changed = set_role(session, who, Role(new_role), actor=actor)
        st.session_state["users_flash"] = f"{changed.name} is now {changed.role.value}"
        st.rerun()
except BearwatchError as exc:
    st.error(str(exc))
