"""The login form (local accounts). An OIDC button would sit beside it as a second authenticator."""

from __future__ import annotations

import secrets

import streamlit as st

from workbench.services.auth import (
    AuthenticationError,
    LocalPasswordAuthenticator,
    client_key,
    log_in,
)
from workbench.ui.state import TOKEN, database


def _client() -> str:
    """Who the throttle counts this try for: the TCP peer's address (Streamlit gives none for
    a local connection), else this browser session."""
    browser = st.session_state.setdefault("login_client", secrets.token_hex(8))
    return client_key(st.context.ip_address, browser)


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
    st.rerun()
