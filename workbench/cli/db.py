"""`workbench db ...`: schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli._common import JsonFlag, emit, handled, say
from workbench.config import get_settings
from workbench.db import migrate
from workbench.db.engine import make_engine

app = typer.Typer(
    help="Database schema: upgrade, downgrade, show the revision.", no_args_is_help=True
)


def _engine():  # type: ignore[no-untyped-def]
    s = get_settings()
    s.ensure_home()
    return make_engine(s.url, busy_timeout_ms=s.sqlite_busy_timeout_ms)


@app.command()
def upgrade(
    revision: Annotated[
        str, typer.Argument(help="Target revision (default: the latest).")
    ] = "head",
    json_mode: JsonFlag = False,
) -> None:
    """Bring the schema up to REVISION (needed on Postgres; SQLite upgrades by itself)."""
    with handled(json_mode):
        engine = _engine()
        before = migrate.current_revision(engine)
        migrate.upgrade(engine, revision)
        after = migrate.current_revision(engine)
        say(f"schema: {before or 'empty'} -> {after}")
        emit({"from": before, "to": after}, json_mode, None)


# ignore_unknown_options: `-1` is a revision here, not an option.
@app.command(context_settings={"ignore_unknown_options": True})
def downgrade(
    revision: Annotated[
        str, typer.Argument(help="Alembic target: -1 (one step), base (empty), or a revision id.")
    ],
    json_mode: JsonFlag = False,
) -> None:
    """Step the schema back to REVISION. Dropped tables lose their data."""
    with handled(json_mode):
        engine = _engine()
        before = migrate.current_revision(engine)
        migrate.downgrade(engine, revision)
        after = migrate.current_revision(engine)
        say(f"schema: {before or 'empty'} -> {after or 'empty'}")
        emit({"from": before, "to": after}, json_mode, None)


@app.command()
def current(json_mode: JsonFlag = False) -> None:
    """Show the schema revision of the configured database and the latest one."""
    with handled(json_mode):
        engine = _engine()
        cur, head = migrate.current_revision(engine), migrate.head_revision(engine)
        emit(
            {"current": cur, "head": head, "up_to_date": cur == head},
            json_mode,
            f"current {cur or 'empty'}, head {head}" + ("" if cur == head else " (out of date)"),
        )
