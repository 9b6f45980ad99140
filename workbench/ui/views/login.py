"""The login form (local accounts). An OIDC button would sit beside it as a second authenticator.

After a login the page hands the new session to the cookie route (`workbench.ui.web`) with a
one-time code, and comes back to the address first asked for (a deep link survives the login).
"""

from __future__ import annotations

import json
import secrets
from urllib.parse import urlsplit

import streamlit as st

from workbench.services.auth import (
    AuthenticationError,
    LocalPasswordAuthenticator,
    client_key,
    log_in,
)
from workbench.ui import session_cookie
from workbench.ui.session_cookie import HANDOFFS, SESSION_ROUTE, safe_next
from workbench.ui.state import TOKEN, database

HANDOFF = "login_handoff"


def _client() -> str:
    """Who the throttle counts this try for: the TCP peer's address (Streamlit gives none for
    a local connection), else this browser session."""
    browser = st.session_state.setdefault("login_client", secrets.token_hex(8))
    return client_key(st.context.ip_address, browser)


def asked_path() -> str:
    """The page path in the browser's address bar ("/adjudication"), "/" when none."""
    return safe_next(urlsplit(st.context.url or "").path or "/")


def render() -> None:
    st.title("Workbench login")
    with st.form("login"):
        name = st.text_input("User name", key="login_name")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in")
    if not submitted:
        return
    try:
        token, _me = log_in(
            database().sessions,
            LocalPasswordAuthenticator(),
            {"user_name": name, "password": password},
            client=_client(),
        )
    except AuthenticationError as exc:
        st.error(exc.message)
        return
    st.session_state[TOKEN] = token
    if session_cookie.routes_mounted:
        st.session_state[HANDOFF] = (HANDOFFS.issue(token), asked_path())
    st.rerun()


_POST = """<script>
(function() {
  const doc = window.parent.document;
  const form = doc.createElement("form");
  form.method = "POST";
  form.action = %(action)s;
  for (const [name, value] of Object.entries(%(fields)s)) {
    const input = doc.createElement("input");
    input.type = "hidden"; input.name = name; input.value = value;
    form.appendChild(input);
  }
  doc.body.appendChild(form);
  form.submit();
})();
</script>"""


def post_from_page(action: str, fields: dict[str, str]) -> None:
    """Make the whole page (not this iframe) POST a form: a top-level navigation whose response
    may set a cookie. The fields are ours (a code and a path), JSON-quoted into the script."""
    html = _POST % {"action": json.dumps(action), "fields": json.dumps(fields)}
    st.iframe(html, height=1)


def finish_handoff() -> bool:
    """Right after a login: send the page to the cookie route; True while that is under way
    (the caller shows nothing else, so no page leases an item before the reload)."""
    pending = st.session_state.pop(HANDOFF, None)
    if pending is None:
        return False
    code, next_path = pending
    st.info("Logging in…")
    post_from_page(SESSION_ROUTE, {"code": code, "next": next_path})
    return True
