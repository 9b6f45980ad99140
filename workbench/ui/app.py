"""The workbench in the browser: `streamlit run workbench/ui/app.py` (or `workbench serve`).

Pages are chosen by role with `st.navigation`, so a page a role may not use does not exist for
it, not even by URL; and every action is checked by role again in the services.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import streamlit as st

from workbench.db.models import Role
from workbench.services.auth import logout
from workbench.ui.state import TOKEN, choose_project, current_user, tx
from workbench.ui.views import login

# (role, title, view module and URL path) in the order the sidebar lists them.
PAGES: tuple[tuple[Role, str, str], ...] = (
    (Role.reviewer, "Review", "review"),
    (Role.lead, "Lead", "lead"),
    (Role.lead, "Adjudication", "adjudication"),
    (Role.lead, "Gold", "gold"),
    (Role.engineer, "Engineer", "engineer"),
    (Role.admin, "Admin", "admin"),
)


def _view(name: str, *args: Any) -> Callable[[], None]:
    """A page that imports its view module when first shown: the lead's statistics libraries
    (statsmodels, scikit-learn, cleanlab) stay out of a server where only reviewers log in, and
    the login page of a fresh server comes up sooner."""

    def run() -> None:
        importlib.import_module(f"workbench.ui.views.{name}").render(*args)

    run.__name__ = name  # Streamlit names a page after its function when asked
    return run


def _logout() -> None:
    token = st.session_state.pop(TOKEN, None)
    if token:
        with tx() as s:
            logout(s, token)


def main() -> None:
    st.set_page_config(page_title="Workbench", layout="wide")
    me = current_user()
    if me is None:
        # Before login no page of any role exists, whatever the address asks for.
        login.render()
        return

    st.sidebar.text(f"{me.name} ({me.role.value})")
    st.sidebar.button("Log out", on_click=_logout)
    project = choose_project(me)

    def needs_project(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            if project is None and Role.admin not in roles:
                st.info("You are not a member of any project yet: ask an admin to add you.")
                return
            if project is None:
                st.info("There is no project yet: create one with `workbench project create`.")
                return
            fn()

        return run

    roles = me.actor.roles
    pages: list[st.Page] = []
    for role, title, view in PAGES:
        if role in roles:
            pages.append(
                st.Page(needs_project(_view(view, me, project or "")), title=title,
                        url_path=view)
            )  # fmt: skip
    pages.append(st.Page(_view("settings", me), title="My settings", url_path="settings"))
    st.navigation(pages).run()


main()
