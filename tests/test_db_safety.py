"""Schema changes never lose data, and the database password never reaches a message."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from migration_rows import fill, snapshot
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from workbench.config import Settings
from workbench.db import migrate
from workbench.db.database import open_database
from workbench.db.engine import make_engine
from workbench.errors import WorkbenchError

FIRST = "0001_foundation"


def _database_at_first_revision(settings: Settings) -> None:
    settings.resolved_home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.url)
    migrate.upgrade(engine, FIRST)
    with engine.begin() as conn:
        fill(conn, FIRST)
    engine.dispose()


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_automatic_upgrade_keeps_every_label_and_backs_up_the_old_file(
    sqlite_settings: Settings,
) -> None:
    _database_at_first_revision(sqlite_settings)
    before = _count(sqlite_settings.resolved_home / "workbench.db", "labels")
    assert before > 0

    db = open_database(sqlite_settings)

    assert migrate.current_revision(db.engine) == migrate.head_revision(db.engine)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM labels").scalar() == before
        assert conn.exec_driver_sql("SELECT count(*) FROM media_assets").scalar() == 2
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    backups = list(sqlite_settings.backups_dir.iterdir())
    assert backups == [db.schema_backup]
    backup = backups[0]
    assert backup.name.startswith(f"workbench-{FIRST}-") and backup.suffix == ".db"
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    # The copy is the database as it was: the old revision and every row.
    assert _count(backup, "labels") == before
    with sqlite3.connect(backup) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (FIRST,)
    db.dispose()


def test_no_backup_for_a_new_or_current_database(sqlite_settings: Settings) -> None:
    first = open_database(sqlite_settings)  # empty file -> head: nothing worth copying
    first.dispose()
    second = open_database(sqlite_settings)  # already at head: no upgrade, no copy
    second.dispose()
    assert first.schema_backup is None and second.schema_backup is None
    assert not sqlite_settings.backups_dir.exists()


def test_upgrade_that_would_leave_a_dangling_foreign_key_is_refused_and_changes_nothing(
    sqlite_settings: Settings,
) -> None:
    _database_at_first_revision(sqlite_settings)
    path = sqlite_settings.resolved_home / "workbench.db"
    with sqlite3.connect(path) as conn:  # foreign keys are off on a plain sqlite3 connection
        conn.execute("UPDATE labels SET item_id = 999 WHERE id = 4")
    engine = make_engine(sqlite_settings.url)
    with engine.connect() as conn:
        before = snapshot(conn)

    with pytest.raises(WorkbenchError, match=r"labels row 4 -> items.*nothing was changed"):
        migrate.upgrade(engine)

    # One transaction: no table of a later revision, no row changed, foreign keys on again.
    assert migrate.current_revision(engine) == FIRST
    assert "embedding_spaces" not in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert snapshot(conn) == before
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("postgresql://wb:cr3t@127.0.0.1:54x32/db", "cannot be parsed"),
        ("postgresql://wb:se@cr3t@127.0.0.1:5432/db", "unescaped @"),
    ],
)
def test_malformed_database_url_fails_without_showing_the_password(
    cli, monkeypatch: pytest.MonkeyPatch, url: str, why: str
) -> None:
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", url)
    for args in (("db", "current"), ("db", "upgrade"), ("project", "list")):
        result = cli(*args)
        assert result.exit_code == 1
        assert why in result.stderr and "%40" in result.stderr
        assert "cr3t" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("make_url_for", "why"),
    [
        (lambda tmp: "mysql://wb:cr3t@127.0.0.1/db", "'mysql' is not supported"),
        (lambda tmp: "postgresql://wb:cr3t@127.0.0.1:1/db", "Connection refused"),
        (lambda tmp: f"sqlite:///{tmp / 'not-a-database.db'}", "file is not a database"),
    ],
    ids=["unsupported", "server-down", "not-a-database"],
)
def test_unusable_database_is_a_clear_error_naming_it_not_an_internal_one(
    cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make_url_for, why: str
) -> None:
    (tmp_path / "not-a-database.db").write_text("these bytes are not SQLite")
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", make_url_for(tmp_path))
    result = cli("project", "list")
    assert result.exit_code == 1
    assert "WORKBENCH_DATABASE_URL" in result.stderr and why in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert "cr3t" not in result.stdout + result.stderr


# A password with everything a URL must escape, and a `%` that ConfigParser would interpolate.
PASSWORD = "p%40ss@w%rd:/x"


@pytest.fixture
def postgres_role_url() -> Iterator[tuple[str, str]]:
    """A role with PASSWORD that owns a fresh database; (URL with the password escaped, role)."""
    base = os.environ.get("WORKBENCH_TEST_DATABASE_URL")
    if not base:
        pytest.skip("WORKBENCH_TEST_DATABASE_URL is not set (CI sets it)")
    role = f"wbrole_{uuid.uuid4().hex[:10]}"
    name = f"wbtest_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        make_url(base).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as c:
        c.execute(text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{PASSWORD}'"))
        c.execute(text(f'CREATE DATABASE "{name}" OWNER "{role}"'))
    host = make_url(base)
    url = f"postgresql://{role}:{quote(PASSWORD, safe='')}@{host.host}:{host.port or 5432}/{name}"
    try:
        yield url, role
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            c.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


@pytest.mark.postgres
def test_percent_escaped_postgres_password_works_and_is_never_printed(
    postgres_role_url: tuple[str, str], cli, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    url, role = postgres_role_url
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", url)
    caplog.set_level(logging.DEBUG)
    outputs = []

    refused = cli("project", "create", "p1")  # the schema is not there yet: says what to do
    outputs.append(refused.stdout + refused.stderr)
    assert refused.exit_code == 1 and "workbench db upgrade" in refused.stderr
    for args in (("db", "upgrade"), ("project", "create", "p1"), ("db", "downgrade", "-1")):
        result = cli(*args)
        outputs.append(result.stdout + result.stderr)
        assert result.exit_code == 0, result.stderr
    current = cli.json("db", "current")
    assert current["current"] == migrate.history(make_engine(url))[1]["revision"]

    engine = make_engine(url)
    with engine.connect() as conn:  # trust auth takes any password: prove it was this role
        assert conn.execute(text("SELECT current_user")).scalar() == role
        assert conn.execute(text("SELECT count(*) FROM projects")).scalar() == 1
    engine.dispose()
    shown = "\n".join(outputs) + caplog.text
    for secret in (PASSWORD, quote(PASSWORD, safe=""), "w%rd", "p%40ss"):
        assert secret not in shown
