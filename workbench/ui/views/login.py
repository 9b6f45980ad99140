"""The login form (local accounts). An OIDC button would sit beside it as a second authenticator."""

from __future__ import annotations

import streamlit as st

from workbench.services.auth import AuthenticationError, LocalPasswordAuthenticator, log_in
from workbench.ui.state import TOKEN, database


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
        )
    except AuthenticationError as exc:
        st.error(exc.message)
        return
    st.session_state[TOKEN] = token
    st.rerun()
