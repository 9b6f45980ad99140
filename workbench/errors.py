"""Errors a user can act on. The CLI prints them without a traceback and exits 1."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One bad input, located: which line of which file, which record and which field."""

    reason: str
    line: int | None = None
    external_id: str | None = None
    field: str | None = None
    file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file if self.line is None else f"{self.file}:{self.line}")
        elif self.line is not None:
            where.append(f"line {self.line}")
        if self.external_id is not None:
            where.append(f"external_id {self.external_id!r}")
        if self.field:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason


class WorkbenchError(Exception):
    """A failure the user can fix; `problems` lists every located cause."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []


class NotFoundError(WorkbenchError):
    """A named project, item, user or version does not exist."""


class PermissionDenied(WorkbenchError):
    """The acting user's role does not allow the action."""


class SchemaOutOfDate(WorkbenchError):
    """The database schema is behind this version of the workbench."""
