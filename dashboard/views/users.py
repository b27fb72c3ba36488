"""Users (admins only): who may log in, with which role; add users, change roles."""

from __future__ import annotations

import streamlit as st

from bearwatch.errors import BearwatchError
from bearwatch.schema import Role
from bearwatch.users import MIN_PASSWORD_LENGTH, add_user, list_users, set_role
from dashboard.context import factory, page_actor

actor = page_actor(Role.ADMIN)
ROLES = [r.value for r in Role]

st.title("Users")
if flash := st.session_state.pop("users_flash", None):
    st.success(flash)
with factory()() as session:
    users = list_users(session, actor=actor)  # not cached: it changes with every action here
st.dataframe(
    [
        {"name": u.name, "role": u.role.value, "login": "password" if u.has_password else "single sign-on",
         "added": f"{u.created_at:%Y-%m-%d %H:%M}Z"}
        for u in users
    ],
    hide_index=True,
    width="stretch",
)

left, right = st.columns(2)
with left, st.form("add_user", clear_on_submit=True):
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

try:
    if add:
        with factory().begin() as session:
            added = add_user(session, name.strip(), Role(role), password, actor=actor)
        st.session_state["users_flash"] = f"user {added.name} added ({added.role.value})"
        st.rerun()
    if change and who:
        with factory().begin() as session:
            changed = set_role(session, who, Role(new_role), actor=actor)
        st.session_state["users_flash"] = f"{changed.name} is now {changed.role.value}"
        st.rerun()
except BearwatchError as exc:
    st.error(str(exc))
