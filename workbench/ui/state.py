"""What every page shares: the database, the logged-in user, the chosen project.

The login token lives in this browser session's state and, under `workbench serve`, in an
HttpOnly cookie (`workbench.ui.web`), so a reload or a reconnect keeps the session; every page
run resolves it on the server again, and every action (`acting`) once more inside its own
transaction, so a logout, an expiry or a disabled account takes effect at the next click,
callbacks included.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st
from sqlalchemy.orm import Session

from workbench.db.database import Database, open_database
from workbench.db.models import Project
from workbench.errors import Problem, WorkbenchError
from workbench.services.auth import SessionUser, require_session, resolve_session
from workbench.services.membership import projects_for
from workbench.services.projects import get_project
from workbench.ui.safe_text import escape_markdown
from workbench.ui.session_cookie import COOKIE

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
    """The user of this browser session's token, else of the login cookie the browser sent when
    it connected (a reload, a reconnect, a new tab); None when neither holds a live session."""
    cookie = st.context.cookies.get(COOKIE)
    token = st.session_state.get(TOKEN) or (cookie if isinstance(cookie, str) else None)
    if not token:
        return None
    with tx() as s:
        me = resolve_session(s, token)
    if me is None:
        st.session_state.pop(TOKEN, None)
    else:
        st.session_state[TOKEN] = token
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


FLASH = "flash_message"


def flash_and_rerun(message: str) -> None:
    """Show an action's result on a fresh run of the page, so every table and list on it
    already shows the state after the action (the run that did it drew them before)."""
    st.session_state[FLASH] = message
    st.rerun()


def show_flash() -> None:
    message = st.session_state.pop(FLASH, None)
    if message:
        st.success(escape_markdown(message))  # it may quote names and ids users chose


# What a reviewer calls the fields a label's problems name.
FIELD_WORDS = {
    "decision": "a decision",
    "policy_codes": "the policies",
    "policies": "the policies",
    "severity": "a severity",
    "confidence": "a confidence",
    "rationale": "the rationale",
    "spans": "the spans",
}


def plain_problem(problem: Problem) -> str:
    """One problem in the words of the form it came from ("Choose a decision."), not the
    validator's ("field 'decision': Field required")."""
    words = FIELD_WORDS.get(problem.field or "")
    if words is None:
        return str(problem)
    if problem.reason == "Field required":
        return f"Choose {words}."
    reason = problem.reason  # the label rules' reasons already read as sentences
    return f"{reason[0].upper()}{reason[1:]}{'' if reason.endswith('.') else '.'}"


def show_error(exc: WorkbenchError) -> None:
    """One message: the problems when the error lists them (its message repeats the first),
    else the message. st.error renders Markdown and messages quote user input, so the text
    goes in as plain text."""
    lines = [plain_problem(p) for p in exc.problems[:20]] or [exc.message]
    st.error("Could not do that.", icon="⚠️")
    for line in dict.fromkeys(lines):  # once each, in order
        st.text(line)
