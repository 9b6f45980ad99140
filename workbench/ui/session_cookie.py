"""The login cookie: its name and attributes, and the one-time handoff that moves a new session's
token from a Streamlit run (which has no HTTP response to set a cookie on) to the small route in
`workbench.ui.web` that sets it, HttpOnly, on a real response.

Why a handoff and not the token itself: the code travels through the page's script, so it is
worth nothing after one use or a minute; the token only ever travels in the cookie.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time

COOKIE = "wb_session"
SESSION_ROUTE = "/_wb/session"
LOGOUT_ROUTE = "/_wb/logout"
HANDOFF_SECONDS = 60.0

# Set by `workbench.ui.web` when its routes are mounted (the app runs as `st.App`); under a
# plain `streamlit run` or AppTest there is no route, and the session lives in the page only.
routes_mounted = False

_NEXT = re.compile(r"^/[A-Za-z0-9_\-]*$")


def safe_next(path: str | None) -> str:
    """Where to go after login: one of this app's own page paths, never another site."""
    return path if path and _NEXT.match(path) else "/"


class Handoffs:
    """One-time codes for tokens, kept in this process for a minute (Streamlit keeps a browser
    on one server process, so the route that redeems a code runs where it was issued)."""

    def __init__(self, ttl_s: float = HANDOFF_SECONDS) -> None:
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._codes: dict[str, tuple[str, float]] = {}

    @staticmethod
    def _key(code: str) -> str:
        return hashlib.sha256(code.encode()).hexdigest()

    def issue(self, token: str) -> str:
        code = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            self._codes = {k: v for k, v in self._codes.items() if v[1] > now}
            self._codes[self._key(code)] = (token, now + self._ttl)
        return code

    def redeem(self, code: str) -> str | None:
        with self._lock:
            entry = self._codes.pop(self._key(code), None)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]


HANDOFFS = Handoffs()
