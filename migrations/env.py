"""Alembic environment: uses the engine handed over by workbench.db.migrate when there is one."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, Engine

from workbench.db import models  # noqa: F401  (registers every table on Base.metadata)
from workbench.db.base import Base
from workbench.db.engine import make_engine
from workbench.errors import WorkbenchError

config = context.config
target_metadata = Base.metadata


def _check_foreign_keys(connection: Connection) -> None:
    """Refuse (and so roll back) a migration that leaves a row pointing at nothing."""
    violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if not violations:
        return
    shown = ", ".join(
        f"{table} row {rowid} -> {parent}" for table, rowid, parent, _fk in violations[:20]
    )
    more = f" and {len(violations) - 20} more" if len(violations) > 20 else ""
    raise WorkbenchError(
        f"the migration would leave {len(violations)} row(s) whose foreign key points at no row "
        f"({shown}{more}); nothing was changed"
    )


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()


def run_migrations_online() -> None:
    engine: Engine | None = config.attributes.get("engine")
    if engine is None:
        engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            with connection.begin():  # Postgres: transactional DDL, one transaction for all steps
                _run(connection)
            return
        # Batch mode rebuilds a table by copying it and dropping the original; with foreign keys
        # on, that DROP deletes (ON DELETE CASCADE) or nulls (SET NULL) every referencing row.
        # SQLite ignores this pragma inside a transaction, so it is set before one begins.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
        try:
            with connection.begin():
                # pysqlite opens a transaction only before DML, so DDL would commit statement by
                # statement; an explicit BEGIN makes the whole upgrade one transaction, undone
                # as a whole by a failed step or by the foreign key check.
                connection.exec_driver_sql("BEGIN")
                _run(connection)
                _check_foreign_keys(connection)
        finally:
            # The connection goes back to the pool: it must enforce foreign keys again.
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
