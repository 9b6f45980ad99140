"""Shared fixtures: a private WORKBENCH_HOME per test, SQLite always, Postgres when configured.

Postgres tests run when WORKBENCH_TEST_DATABASE_URL is set (CI always sets it); each test gets a
database of its own, created from that URL and dropped afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from workbench.config import Settings
from workbench.db.database import Database, open_database
from workbench.db.engine import normalise_url

PG_ENV = "WORKBENCH_TEST_DATABASE_URL"


@pytest.fixture(autouse=True)
def keep_main_module() -> Iterator[None]:
    """Streamlit's AppTest runs its script as `__main__` and leaves it there; a later test that
    starts processes with multiprocessing's spawn would then re-run that temporary script in
    each child (NameError: __args). Put the real `__main__` back after every test."""
    main = sys.modules.get("__main__")
    yield
    if main is not None and sys.modules.get("__main__") is not main:
        sys.modules["__main__"] = main


def postgres_base_url() -> str | None:
    url = os.environ.get(PG_ENV)
    return normalise_url(url) if url else None


def _admin_engine(base: str):  # type: ignore[no-untyped-def]
    return create_engine(base, isolation_level="AUTOCOMMIT")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty Postgres database for one test."""
    base = postgres_base_url()
    if base is None:
        pytest.skip(f"{PG_ENV} is not set (CI sets it; Postgres tests never skip there)")
    name = f"wbtest_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(base)
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run the test once on SQLite and once on Postgres."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'wb.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("WORKBENCH_HOME", str(h))
    monkeypatch.delenv("WORKBENCH_DATABASE_URL", raising=False)
    return h


@pytest.fixture
def settings(home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for both backends; the env is set too, so CLI calls see the same database."""
    if database_url.startswith("postgresql"):
        monkeypatch.setenv("WORKBENCH_DATABASE_URL", database_url)
    else:
        monkeypatch.setenv("WORKBENCH_DATABASE_URL", database_url)
    return Settings()


@pytest.fixture
def sqlite_settings(home: Path) -> Settings:
    """SQLite only (the embedded default), for tests whose behaviour has no backend difference."""
    return Settings()


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    from workbench.db.engine import make_engine
    from workbench.db.migrate import upgrade

    if not settings.is_sqlite:
        upgrade(make_engine(settings.url))  # Postgres is upgraded on purpose, never implicitly
    database = open_database(settings)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(sqlite_settings: Settings) -> Iterator[Database]:
    database = open_database(sqlite_settings)
    yield database
    database.dispose()


class CLI:
    """Runs `workbench ...` in-process, stdout and stderr kept apart."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Any:
        from workbench.cli import app

        return self.runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)

    def json(self, *args: str, input: str | None = None, expect: int = 0) -> dict[str, Any]:
        result = self(*args, "--json", input=input)
        assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
        lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
        assert len(lines) == 1, f"--json must print exactly one line, got {result.stdout!r}"
        data: dict[str, Any] = json.loads(lines[0])
        return data


@pytest.fixture
def cli(home: Path) -> CLI:
    return CLI()


@pytest.fixture(scope="session", autouse=True)
def shared_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One ONNX export of the text model per test session, not one per WORKBENCH_HOME.

    Set in os.environ (not monkeypatch) so subprocesses such as `workbench serve` share it.
    """
    if "WORKBENCH_MODEL_CACHE" in os.environ:
        yield
        return
    os.environ["WORKBENCH_MODEL_CACHE"] = str(tmp_path_factory.mktemp("model-cache"))
    try:
        yield
    finally:
        os.environ.pop("WORKBENCH_MODEL_CACHE", None)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, for Playwright (which cannot download a browser here)."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("WORKBENCH_REQUIRE_BROWSER") == "1":
            raise RuntimeError("WORKBENCH_REQUIRE_BROWSER=1 but no `chromium` on PATH")
        pytest.skip("no `chromium` on PATH: browser tests need Debian's chromium")
    return path
