"""The workbench in the browser: `streamlit run workbench/ui/app.py` (or `workbench serve`).

Pages are chosen by role with `st.navigation`, so a page a role may not use does not exist for
it, not even by URL; and every action is checked by role again in the services.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from workbench.db.models import Role
from workbench.services.auth import logout
from workbench.ui.state import TOKEN, choose_project, current_user, tx
from workbench.ui.views import adjudication, admin, engineer, gold, lead, login, review, settings

PAGE_PATHS = ("review", "lead", "adjudication", "gold", "engineer", "admin", "settings")


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
    project = choose_project()

    def needs_project(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            if project is None:
                st.info("There is no project yet: create one with `workbench project create`.")
                return
            fn()

        return run

    roles = me.actor.roles
    pages: list[st.Page] = []
    if Role.reviewer in roles:
        pages.append(
            st.Page(needs_project(lambda: review.render(me, project or "")), title="Review",
                    url_path="review")
        )  # fmt: skip
    if Role.lead in roles:
        pages.append(
            st.Page(needs_project(lambda: lead.render(me, project or "")), title="Lead",
                    url_path="lead")
        )  # fmt: skip
        pages.append(
            st.Page(needs_project(lambda: adjudication.render(me, project or "")),
                    title="Adjudication", url_path="adjudication")
        )  # fmt: skip
        pages.append(
            st.Page(needs_project(lambda: gold.render(me, project or "")), title="Gold",
                    url_path="gold")
        )  # fmt: skip
    if Role.engineer in roles:
        pages.append(
            st.Page(needs_project(lambda: engineer.render(me, project or "")), title="Engineer",
                    url_path="engineer")
        )  # fmt: skip
    if Role.admin in roles:
        pages.append(
            st.Page(needs_project(lambda: admin.render(me, project or "")), title="Admin",
                    url_path="admin")
        )  # fmt: skip
    pages.append(st.Page(lambda: settings.render(me), title="My settings", url_path="settings"))
    st.navigation(pages).run()


main()
