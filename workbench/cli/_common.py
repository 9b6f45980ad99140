"""What every command shares: --json output, errors without tracebacks, the database.

Conventions: `--json` prints exactly one JSON object on stdout; messages and progress go to
stderr; exit 0 on success, 1 on bad input or failure, 2 on wrong usage (click's own).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer

from workbench.db.database import Database, open_database
from workbench.db.engine import redact_passwords
from workbench.errors import WorkbenchError

JsonFlag = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON object on stdout (messages stay on stderr)."),
]
ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="Project name.")]


def say(message: str) -> None:
    """A message for the person at the terminal: always stderr, never mixed into --json."""
    print(message, file=sys.stderr, flush=True)


def emit(result: dict[str, Any], json_mode: bool, human: str | Callable[[], None] | None) -> None:
    if json_mode:
        sys.stdout.write(json.dumps(result, ensure_ascii=False, default=str) + "\n")
        sys.stdout.flush()
    elif callable(human):
        human()
    elif human is not None:
        print(human)


def fail(message: str, json_mode: bool, problems: list[dict[str, Any]] | None = None) -> NoReturn:
    # A backstop: a driver's or library's message may quote the database URL it was given.
    message = redact_passwords(message)
    problems = [{**p, "text": redact_passwords(str(p["text"]))} for p in problems or []]
    say(f"error: {message}")
    for p in problems[:200]:
        say(f"  - {p['text']}")
    if problems and len(problems) > 200:
        say(f"  ... and {len(problems) - 200} more")
    if json_mode:
        emit(
            {
                "ok": False,
                "error": message,
                "problems": [{k: v for k, v in p.items() if k != "text"} for p in problems or []],
            },
            True,
            None,
        )
    raise typer.Exit(1)


@contextmanager
def handled(json_mode: bool) -> Iterator[None]:
    """Turn every failure into a clear message and exit status 1, never a traceback."""
    try:
        yield
    except typer.Exit:
        raise
    except WorkbenchError as exc:
        fail(
            exc.message,
            json_mode,
            [{**p.as_dict(), "text": str(p)} for p in exc.problems],
        )
    except KeyboardInterrupt:
        fail("interrupted; the work in progress was rolled back", json_mode)
    except Exception as exc:
        if os.environ.get("WORKBENCH_DEBUG"):
            say(redact_passwords(traceback.format_exc()))
        # One line, as every other error: SQLAlchemy adds "(Background on this error at: ...)".
        detail = (str(exc).strip().splitlines() or [""])[0]
        fail(
            f"internal error: {type(exc).__name__}: {detail} "
            "(set WORKBENCH_DEBUG=1 to see the traceback, and please report it)",
            json_mode,
        )


@contextmanager
def database(json_mode: bool) -> Iterator[Database]:
    with handled(json_mode):
        db = open_database()
        try:
            yield db
        finally:
            db.dispose()
