"""Engine and session factory for SQLite (embedded default) and Postgres (psycopg 3)."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from workbench.config import PRIVATE_FILE, private_dir
from workbench.errors import WorkbenchError

_ESCAPE_HINT = "write characters such as @ : / % in the user name or password as %40 %3A %2F %25"


def parse_url(url: str) -> URL:
    """Parse a database URL; a malformed one fails with a message that never shows it.

    Why not show it: the parser's own messages quote the piece it choked on, which for an
    unescaped `/` or `@` is part of the password.
    """
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    try:
        u = make_url(url)
    except (ArgumentError, ValueError):
        raise WorkbenchError(
            f"the database URL ({scheme}://...) cannot be parsed: {_ESCAPE_HINT}"
        ) from None
    if u.host and "@" in u.host:
        # `user:p@ss@host` parses, with `ss@host` as the host: the connection error would name it.
        raise WorkbenchError(
            f"the database URL ({scheme}://...) has an unescaped @: {_ESCAPE_HINT}"
        )
    return u


def normalise_url(url: str) -> str:
    """Accept `postgres://` and `postgresql://` and use the psycopg 3 driver for both."""
    u = parse_url(url)
    if u.drivername in ("postgres", "postgresql"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


# `scheme://user:password@` (greedy to the last @ of the word: an unescaped @ in the password)
# and libpq's `password=...` in a connection string or error message.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s]*@", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def redact_passwords(text: str) -> str:
    """`text` with the password of every database URL or connection string in it as `***`."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}***@", text)
    return _KEYWORD_PASSWORD.sub(lambda m: f"{m['head']}***", text)


def _private_sqlite_file(path: Path) -> None:
    """Create the database file, or tighten the one there, to 0600 before SQLite opens it.

    SQLite gives its -wal and -shm files the database file's mode, so they follow."""
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if f.stat().st_mode & 0o077:
                os.chmod(f, PRIVATE_FILE)
        except FileNotFoundError:
            continue
        except PermissionError:  # another account's file, opened read-only: not ours to change
            continue


SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def make_engine(url: str, *, busy_timeout_ms: int = 30_000, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    u = make_url(url)
    if u.get_backend_name() not in SUPPORTED_BACKENDS:
        raise WorkbenchError(
            f"WORKBENCH_DATABASE_URL: the database {u.get_backend_name()!r} is not supported; "
            "use sqlite:///PATH (the default) or postgresql+psycopg://USER@HOST/DB"
        )
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            _private_sqlite_file(Path(u.database))
        engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers (the UI) work while one writer commits; foreign keys are off by
            # default in SQLite; the busy timeout makes a second writer wait instead of failing.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: services return ORM objects that callers read after commit.
    return sessionmaker(engine, expire_on_commit=False)
