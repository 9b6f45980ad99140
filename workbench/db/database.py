"""Open the configured database, with its schema checked (and upgraded, on SQLite)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from workbench.config import Settings, get_settings
from workbench.db.engine import make_engine, make_sessionmaker
from workbench.db.migrate import ensure_current


@dataclass
class Database:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(settings: Settings | None = None, *, check_schema: bool = True) -> Database:
    settings = settings or get_settings()
    settings.resolved_home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    if check_schema:
        ensure_current(engine, auto_upgrade=engine.dialect.name == "sqlite")
    return Database(settings=settings, engine=engine, sessions=make_sessionmaker(engine))
