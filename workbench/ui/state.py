"""What every page shares: the database, the logged-in user, the chosen project.

The login token lives only in this browser session's state; every page run resolves it on the
server again, and every action (`acting`) once more inside its own transaction, so a logout, an
expiry or a disabled account takes effect at the next click, callbacks included.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st
from sqlalchemy.orm import Session

from workbench.db.database import Database, open_database
from workbench.db.models import Project
from workbench.errors import WorkbenchError
from workbench.services.auth import SessionUser, require_session, resolve_session
from workbench.services.membership import projects_for
from workbench.services.projects import get_project

TOKEN = "auth_token"


@st.cache_resource
def database() -> Database:
    return open_database()


@contextmanager
def tx() -> Iterator[Session]:
    """One transaction per action: committed when the block ends, rolled back on error."""
    with database().sessions.begin() as s:
        yield s


@contextmanager
def acting() -> Iterator[tuple[Session, SessionUser]]:
    """One transaction for one action of the logged-in user, who is resolved from the token
    again inside it (SessionEnded if the session is over).

    Why not the page's user: Streamlit runs a callback (on_click, on_change) before the page
    script, so a `SessionUser` handed to it as an argument is the previous run's, unchecked.
    """
    with tx() as s:
        yield s, require_session(s, st.session_state.get(TOKEN))


def current_user() -> SessionUser | None:
    token = st.session_state.get(TOKEN)
    if not token:
        return None
    with tx() as s:
        me = resolve_session(s, token)
    if me is None:
        st.session_state.pop(TOKEN, None)
    return me


def choose_project(me: SessionUser) -> str | None:
    """The project picked in the sidebar among those `me` may open (default: WORKBENCH_PROJECT,
    else the first)."""
    with tx() as s:
        names = projects_for(s, me.actor)
    if not names:
        return None
    wanted = os.environ.get("WORKBENCH_PROJECT")
    index = names.index(wanted) if wanted in names else 0
    return str(st.sidebar.selectbox("Project", names, index=index, key="project"))


def load_project(s: Session, name: str) -> Project:
    return get_project(s, name)


def show_error(exc: WorkbenchError) -> None:
    # st.error renders Markdown; service messages quote user input, so show them as plain text.
    st.error("Could not do that:", icon="⚠️")
    st.text(exc.message)
    for p in exc.problems[:20]:
        st.text(f"- {p}")
