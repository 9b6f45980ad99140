"""How many rows a guarded write changed: the one typed way to read a statement's rowcount."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Executable
from sqlalchemy.orm import Session


def rows_changed(session: Session, statement: Executable) -> int:
    """Run a guarded UPDATE or DELETE; how many rows it changed (0: the guard did not hold).

    Why a helper: `Session.execute` is typed as returning `Result`, which has no `rowcount`;
    only the cursor result of a DML statement does, and each caller casting it was the same
    line written five times.
    """
    return int(cast(CursorResult[Any], session.execute(statement)).rowcount or 0)
