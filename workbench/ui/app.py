"""The workbench in the browser: `streamlit run workbench/ui/app.py` (or `workbench serve`).

Pages are chosen by role with `st.navigation`: each role lands on its own page, and a page a
role may not use is listed for it only as a hidden page that says so (by URL), without running
its view; every action is checked by role again in the services.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import streamlit as st

from workbench.db.models import Role
from workbench.services.auth import logout
from workbench.ui import session_cookie
from workbench.ui.session_cookie import LOGOUT_ROUTE
from workbench.ui.state import TOKEN, choose_project, current_user, tx
from workbench.ui.views import login

# (roles, title, view module and URL path) in the order the sidebar lists them. A page used by
# several roles is listed once with all of them, so a user who holds several (an admin holds
# every role) gets it once, at one address.
PAGES: tuple[tuple[frozenset[Role], str, str], ...] = (
    (frozenset({Role.reviewer}), "Review", "review"),
    (frozenset({Role.lead}), "Lead", "lead"),
    (frozenset({Role.lead}), "Adjudication", "adjudication"),
    (frozenset({Role.lead}), "Gold", "gold"),
    (frozenset({Role.lead}), "DSA report", "report"),
    (frozenset({Role.engineer}), "Engineer", "engineer"),
    (frozenset({Role.engineer, Role.lead}), "Evaluation", "evaluation"),
    (frozenset({Role.admin}), "Admin", "admin"),
)

# The page each role lands on. Only the Review page leases an item, so a lead or an admin who
# logs in takes nothing away from the reviewers until they choose to review.
HOME: dict[Role, str] = {
    Role.reviewer: "review",
    Role.lead: "lead",
    Role.engineer: "engineer",
    Role.admin: "admin",
}
LOGGING_OUT = "logging_out"


def _view(name: str, *args: Any) -> Callable[[], None]:
    """A page that imports its view module when first shown: the lead's statistics libraries
    (statsmodels, scikit-learn, cleanlab) stay out of a server where only reviewers log in, and
    the login page of a fresh server comes up sooner."""

    def run() -> None:
        importlib.import_module(f"workbench.ui.views.{name}").render(*args)

    run.__name__ = name  # Streamlit names a page after its function when asked
    return run


def _forbidden(
    title: str, allowed: frozenset[Role], me_name: str, me_role: Role
) -> Callable[[], None]:
    """What a page a role may not open shows instead of its view: that it is not theirs."""
    names = sorted(r.value for r in allowed)
    who = " and ".join(names) + (" roles" if len(names) > 1 else " role")

    def run() -> None:
        st.title(title)
        st.error(
            f"The {title} page is for the {who}; you are logged in as "
            f"{me_name} ({me_role.value}). Pick one of your pages in the sidebar."
        )

    run.__name__ = f"forbidden_{title.lower()}"
    return run


def _logout() -> None:
    token = st.session_state.pop(TOKEN, None)
    if token:
        with tx() as s:
            logout(s, token)
    if session_cookie.routes_mounted:
        st.session_state[LOGGING_OUT] = True


def main() -> None:
    st.set_page_config(page_title="Workbench", layout="wide")
    if st.session_state.pop(LOGGING_OUT, False):
        # The session is revoked already; clear the cookie too, then show the login page.
        login.post_from_page(LOGOUT_ROUTE, {})
        st.info("Logged out.")
        return
    if login.finish_handoff():
        return
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
    home = HOME[me.role]
    by_view: dict[str, st.Page] = {}
    for allowed, title, view in PAGES:
        if allowed & roles:
            by_view[view] = st.Page(
                needs_project(_view(view, me, project or "")), title=title, url_path=view
            )
        else:
            by_view[view] = st.Page(
                _forbidden(title, allowed, me.name, me.role), title=title, url_path=view,
                visibility="hidden",
            )  # fmt: skip

    def land() -> None:
        # The root address opens the role's own page under its own address (a default page
        # would take the root's address instead, and its own, e.g. /lead, would not exist).
        st.switch_page(by_view[home])

    pages.append(st.Page(land, title="Home", url_path="home", default=True, visibility="hidden"))
    pages.extend(by_view.values())
    pages.append(st.Page(_view("settings", me), title="My settings", url_path="settings"))
    st.navigation(pages).run()


main()
