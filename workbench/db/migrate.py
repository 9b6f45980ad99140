"""Run Alembic from inside the installed package (editable or wheel alike)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from workbench.errors import SchemaOutOfDate, WorkbenchError


def migrations_dir() -> Path:
    return Path(str(resources.files("workbench.migrations")))


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    # env.py reuses this engine instead of building its own (same pragmas, same pool).
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    try:
        command.downgrade(alembic_config(engine), revision)
    except Exception as exc:  # alembic raises CommandError and friends for a bad target
        raise WorkbenchError(f"cannot downgrade to {revision!r}: {exc}") from exc


def history(engine: Engine) -> list[dict[str, str | None]]:
    script = ScriptDirectory.from_config(alembic_config(engine))
    return [
        {"revision": r.revision, "down_revision": str(r.down_revision), "doc": r.doc}
        for r in script.walk_revisions()
    ]


def ensure_current(engine: Engine, *, auto_upgrade: bool) -> None:
    """Bring the embedded database up to date, or refuse to work on an old Postgres schema.

    Why the difference: SQLite is private to this workbench, so upgrading it silently is what a
    user expects; a shared Postgres is upgraded on purpose, by whoever owns it.
    """
    current, head = current_revision(engine), head_revision(engine)
    if current == head:
        return
    if auto_upgrade:
        upgrade(engine)
        return
    raise SchemaOutOfDate(
        f"the database schema is at {current or 'no revision (empty database)'}, this workbench "
        f"needs {head}: run `workbench db upgrade` first"
    )
