"""The admin page: users and roles, project members, the policy taxonomy, project settings."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from workbench.db.models import Role
from workbench.errors import WorkbenchError
from workbench.services.auth import SessionUser
from workbench.services.projects import project_settings_view, set_project_setting
from workbench.services.taxonomy import load_taxonomy_version, taxonomy_versions
from workbench.services.users import (
    add_user,
    get_user,
    list_accounts,
    set_disabled,
    set_password,
    set_role,
)
from workbench.ui.safe_text import escape_markdown
from workbench.ui.state import acting, load_project, show_error, tx
from workbench.ui.views.admin_members import render_members

ROLES = [r.value for r in Role]


def _users(me: SessionUser) -> None:
    st.subheader("Users")
    with tx() as s:
        accounts = list_accounts(s, me.actor)
    st.dataframe(
        pd.DataFrame(
            [{"name": a.name, "role": a.role.value, "disabled": a.disabled,
              "can log in": a.can_log_in} for a in accounts]
        ),
        hide_index=True,
    )  # fmt: skip
    with st.form("add_user"):
        name = st.text_input("New user name")
        role = st.selectbox("Role", ROLES)
        password = st.text_input("Initial password", type="password")
        if st.form_submit_button("Add user"):
            try:
                with acting() as (s, me):
                    add_user(s, name, Role(role), me.actor, password=password or None)
                st.success(f"Added {escape_markdown(name)}.")
            except WorkbenchError as exc:
                show_error(exc)
    names = [a.name for a in accounts]
    if not names:
        return
    with st.form("change_user"):
        who = st.selectbox("User", names)
        new_role = st.selectbox("Role", ["(unchanged)", *ROLES])
        new_password = st.text_input("New password", type="password")
        disable = st.radio("Account", ["(unchanged)", "enable", "disable"], horizontal=True)
        if st.form_submit_button("Apply"):
            try:
                with acting() as (s, me):
                    user = get_user(s, who)
                    if new_role != "(unchanged)":
                        set_role(s, user, Role(new_role), me.actor)
                    if new_password:
                        set_password(s, user, new_password, me.actor)
                    if disable != "(unchanged)":
                        set_disabled(s, user, disable == "disable", me.actor)
                st.success(f"Updated {escape_markdown(who)}.")
            except WorkbenchError as exc:
                show_error(exc)


def _taxonomy(me: SessionUser, project_name: str) -> None:
    st.subheader("Policy taxonomy")
    try:
        with tx() as s:
            versions = taxonomy_versions(s, load_project(s, project_name), me.actor)
    except WorkbenchError as exc:
        show_error(exc)
        return
    for v in reversed(versions):
        # An expander's label renders Markdown; the name comes from the uploaded file.
        with st.expander(escape_markdown(f"Version {v.get('version')}: {v.get('name')}")):
            st.code(json.dumps(v, indent=1, default=str), language=None)
    upload = st.file_uploader("Load a new version (JSON)", type=["json"])
    if upload is not None and st.button("Load this taxonomy"):
        try:
            with acting() as (s, me):
                n = load_taxonomy_version(
                    s, load_project(s, project_name), me.actor, upload.getvalue(), upload.name
                )
            st.success(f"Taxonomy version {n} is now current.")
        except WorkbenchError as exc:
            show_error(exc)


def _settings(me: SessionUser, project_name: str) -> None:
    st.subheader("Project settings")
    with tx() as s:
        settings = project_settings_view(s, load_project(s, project_name), me.actor)
    st.code(json.dumps(settings, indent=1), language=None)
    with st.form("setting"):
        key = st.text_input("Setting (dotted key, e.g. overlap_k)")
        value = st.text_input("Value (JSON)")
        if st.form_submit_button("Set"):
            try:
                try:
                    parsed = json.loads(value)
                except json.JSONDecodeError:
                    parsed = value
                with acting() as (s, me):
                    set_project_setting(s, load_project(s, project_name), key, parsed, me.actor)
                st.success(f"Set {escape_markdown(key)}.")
            except WorkbenchError as exc:
                show_error(exc)


def render(me: SessionUser, project_name: str) -> None:
    st.title("Admin")
    try:
        _users(me)
    except WorkbenchError as exc:
        show_error(exc)
        return
    render_members(me, project_name)
    _taxonomy(me, project_name)
    _settings(me, project_name)
