"""The admin page's project membership section: who may open which project."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench.db.models import Role
from workbench.errors import WorkbenchError
from workbench.services.auth import SessionUser
from workbench.services.membership import add_member, members_of, projects_for, remove_member
from workbench.services.users import get_user, list_accounts
from workbench.ui.safe_text import escape_markdown
from workbench.ui.state import acting, load_project, show_error, tx

ADD_KEY, REMOVE_KEY, NOTICE = "member_add_user", "member_remove_user", "members_notice"


def render_members(me: SessionUser, current_project: str) -> None:
    st.subheader("Project members")
    _notice()
    st.text(
        "Reviewers, leads and engineers open only the projects they are members of; "
        "admins open every project."
    )
    with tx() as s:
        names = projects_for(s, me.actor)
    if not names:
        return
    index = names.index(current_project) if current_project in names else 0
    chosen = st.selectbox("Members of project", names, index=index, key="members_project")
    project_name = str(chosen)
    with tx() as s:
        members = members_of(s, load_project(s, project_name), me.actor)
        accounts = list_accounts(s, me.actor)
    if members:
        st.dataframe(
            pd.DataFrame(
                [{"name": m.name, "role": m.role.value, "disabled": m.disabled,
                  "added (UTC)": m.added_at.strftime("%Y-%m-%d %H:%M"), "added by": m.added_by}
                 for m in members]
            ),
            hide_index=True,
        )  # fmt: skip
    else:
        st.text(f"{project_name} has no members: only admins can open it.")
    inside = {m.name for m in members}
    # Admins open every project already; offering them here would only add noise.
    outside = [a.name for a in accounts if a.name not in inside and a.role is not Role.admin]
    add_col, remove_col = st.columns(2)
    # Callbacks run before the next page run, so the table above already shows the change.
    with add_col.form("add_member"):
        st.selectbox("User to add", outside, key=ADD_KEY)
        st.form_submit_button(
            "Add to project", disabled=not outside, on_click=_change, args=(project_name, True)
        )
    with remove_col.form("remove_member"):
        st.selectbox("Member to remove", sorted(inside), key=REMOVE_KEY)
        st.form_submit_button(
            "Remove from project", disabled=not inside, on_click=_change,
            args=(project_name, False),
        )  # fmt: skip


def _change(project_name: str, add: bool) -> None:
    user_name = st.session_state.get(ADD_KEY if add else REMOVE_KEY)
    if not user_name:
        return
    try:
        with acting() as (s, me):
            project, user = load_project(s, project_name), get_user(s, str(user_name))
            if add:
                add_member(s, project, user, me.actor)
            else:
                remove_member(s, project, user, me.actor)
    except WorkbenchError as exc:
        st.session_state[NOTICE] = exc
        return
    verb = "may now open" if add else "may no longer open"
    st.session_state[NOTICE] = f"{user_name} {verb} {project_name}."


def _notice() -> None:
    """The outcome of the last add or remove, shown once."""
    notice = st.session_state.pop(NOTICE, None)
    if isinstance(notice, WorkbenchError):
        show_error(notice)
    elif notice:
        st.success(escape_markdown(str(notice)))
