"""The admin page: users and roles, project members, the policy taxonomy, project settings."""

from __future__ import annotations

import json
from typing import Any, Literal, get_args, get_origin

import pandas as pd
import streamlit as st

from workbench.db.models import Role
from workbench.errors import WorkbenchError
from workbench.schemas import ProjectSettings
from workbench.services.auth import SessionUser, login_states
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
from workbench.ui.state import acting, flash_and_rerun, load_project, show_error, show_flash, tx
from workbench.ui.views.admin_members import render_members

ROLES = [r.value for r in Role]


def _users(me: SessionUser) -> None:
    st.subheader("Users")
    with tx() as s:
        accounts = list_accounts(s, me.actor)
        logins = login_states(s, me.actor)

    def locked(name: str) -> str:
        wait = logins[name].locked_for_s if name in logins else 0.0
        return f"locked for {wait:.0f} s" if wait > 0 else "no"

    def last(name: str) -> str:
        at = logins[name].last_login if name in logins else None
        return at.strftime("%Y-%m-%d %H:%M UTC") if at else "never"

    st.dataframe(
        pd.DataFrame(
            [{"name": a.name, "role": a.role.value, "status": a.status,
              "last login": last(a.name), "locked out": locked(a.name)} for a in accounts]
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
            except WorkbenchError as exc:
                show_error(exc)
            else:
                flash_and_rerun(f"Added {name}.")
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
            except WorkbenchError as exc:
                show_error(exc)
            else:
                flash_and_rerun(f"Updated {who}.")


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
        except WorkbenchError as exc:
            show_error(exc)
        else:
            flash_and_rerun(f"Taxonomy version {n} is now current.")


def _simple_fields() -> list[tuple[str, Any, str]]:
    """(name, annotation, description) of each setting a single widget can edit, in the
    schema's order; nested ones (encoders, selection_mix) keep the dotted-key setter."""
    out = []
    for name, info in ProjectSettings.model_fields.items():
        kind = info.annotation
        if kind in (int, float, bool) or get_origin(kind) is Literal:
            out.append((name, kind, info.description or ""))
    return out


def _widget(name: str, kind: Any, help_text: str, value: Any) -> Any:
    label = name.replace("_", " ")
    if kind is bool:
        return st.checkbox(label, value=bool(value), help=help_text, key=f"setting_{name}")
    if kind is int:
        return st.number_input(label, value=int(value), step=1, help=help_text,
                               key=f"setting_{name}")  # fmt: skip
    if kind is float:
        return st.number_input(label, value=float(value), step=0.01, format="%.3f",
                               help=help_text, key=f"setting_{name}")  # fmt: skip
    choices = list(get_args(kind))
    return st.selectbox(label, choices, index=choices.index(value), help=help_text,
                        key=f"setting_{name}")  # fmt: skip


def _settings(me: SessionUser, project_name: str) -> None:
    st.subheader("Project settings")
    with tx() as s:
        settings = project_settings_view(s, load_project(s, project_name), me.actor)
    st.caption("Each setting's description is in its help (?). Save applies the changed ones.")
    fields = _simple_fields()
    with st.form("settings_form"):
        cols = st.columns(2)
        chosen = {
            name: _widget_in(cols[n % 2], name, kind, help_text, settings[name])
            for n, (name, kind, help_text) in enumerate(fields)
        }
        saved = st.form_submit_button("Save settings")
    if saved:
        changed = {k: v for k, v in chosen.items() if v != settings[k]}
        try:
            with acting() as (s, me):
                project = load_project(s, project_name)
                for key, value in changed.items():
                    set_project_setting(s, project, key, value, me.actor)
        except WorkbenchError as exc:
            show_error(exc)
        else:
            flash_and_rerun(f"Saved {', '.join(changed)}." if changed else "No setting changed.")
    with st.expander("Nested settings (encoders, selection mix) and the settings as JSON"):
        st.code(json.dumps(settings, indent=1), language=None)
        with st.form("setting"):
            key = st.text_input("Setting (dotted key, e.g. encoders.text)")
            value = st.text_input("Value (JSON)")
            if st.form_submit_button("Set"):
                try:
                    try:
                        parsed = json.loads(value)
                    except json.JSONDecodeError:
                        parsed = value
                    with acting() as (s, me):
                        set_project_setting(s, load_project(s, project_name), key, parsed, me.actor)
                except WorkbenchError as exc:
                    show_error(exc)
                else:
                    flash_and_rerun(f"Set {key}.")


def _widget_in(col: Any, name: str, kind: Any, help_text: str, value: Any) -> Any:
    with col:
        return _widget(name, kind, help_text, value)


def render(me: SessionUser, project_name: str) -> None:
    st.title("Admin")
    show_flash()
    try:
        _users(me)
    except WorkbenchError as exc:
        show_error(exc)
        return
    render_members(me, project_name)
    _taxonomy(me, project_name)
    _settings(me, project_name)
