"""`workbench bank ...`: hash-match banks shared by every project (create, add, import, export,
list, disable, enable)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli._common import JsonFlag, database, emit, say
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor
from workbench.services.scan.banks import store

app = typer.Typer(
    help="Hash-match banks: known content found again by PDQ, vPDQ, SHA-256 and MD5.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Bank name: capitals, digits, _ (e.g. KNOWN_BAD).")]


@app.command()
def create(
    name: NameArg,
    action: Annotated[str, typer.Option(help="What a match does: block or review.")],
    ratio: Annotated[
        float, typer.Option(help="matching_enabled_ratio: share of subjects matched (0-1).")
    ] = 1.0,
    json_mode: JsonFlag = False,
) -> None:
    """Create a bank."""
    with database(json_mode) as db, db.sessions.begin() as s:
        bank = store.create_bank(s, Actor.system(), name, action, ratio)
        out = {"name": bank.name, "action": bank.action.value, "matching_enabled_ratio": ratio}
        say(f"bank {name} created ({bank.action.value}, ratio {ratio})")
        emit(out, json_mode, None)


@app.command()
def add(
    name: NameArg,
    file: Annotated[Path, typer.Option("--file", help="The file to bank.")],
    content_id: Annotated[str | None, typer.Option(help="Your id for this content.")] = None,
    note: Annotated[str | None, typer.Option(help="Why it is banked.")] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Hash a file (PDQ for images, vPDQ for videos, SHA-256 and MD5 for any) into a bank."""
    with database(json_mode) as db, db.sessions.begin() as s:
        rows = store.add_path(s, Actor.system(), name, file, content_id=content_id, note=note)
        signals = [
            {"signal_type": r.signal_type.value, "signal": r.signal, "quality": r.quality}
            for r in rows
        ]
        say(
            f"added {len(rows)} signal(s) to {name}: "
            + ", ".join(r.signal_type.value for r in rows)
        )
        emit({"bank": name, "content_id": content_id, "signals": signals}, json_mode, None)


@app.command("import")
def import_(
    name: NameArg,
    file: Annotated[Path, typer.Argument(help="CSV: signal_type,signal,content_id,note.")],
    json_mode: JsonFlag = False,
) -> None:
    """Add every signal of a CSV to a bank; one bad line and nothing is added."""
    with database(json_mode) as db, db.sessions.begin() as s:
        result = store.import_csv(s, Actor.system(), name, file)
        say(f"{name}: {result.added} added, {result.already_present} already present")
        emit(
            {"bank": name, "added": result.added, "already_present": result.already_present},
            json_mode,
            None,
        )


@app.command()
def export(
    name: NameArg,
    file: Annotated[
        Path, typer.Argument(help="CSV to write (signal_type,signal,content_id,note).")
    ],
    json_mode: JsonFlag = False,
) -> None:
    """Write a bank's signals as CSV, the format `bank import` reads."""
    with database(json_mode) as db, db.sessions.begin() as s:
        n = store.export_csv(s, Actor.system(), name, file)
        say(f"wrote {n} signal(s) of {name} to {file}")
        emit({"bank": name, "file": str(file), "signals": n}, json_mode, None)


@app.command("list")
def list_(json_mode: JsonFlag = False) -> None:
    """Every bank with its action, roll-out ratio, state and signal counts."""
    with database(json_mode) as db, db.sessions() as s:
        banks = [b.as_dict() for b in store.list_banks(s)]

        def human() -> None:
            if not banks:
                print("no banks (create one with `workbench bank create NAME --action block`)")
            for b in banks:
                state = (
                    "enabled" if b["enabled"] else f"disabled until {b['disabled_until'] or '-'}"
                )
                counts = ", ".join(f"{k} {v}" for k, v in sorted(b["signals"].items())) or "empty"
                print(
                    f"{b['name']:<24} {b['action']:<7} ratio {b['matching_enabled_ratio']:<5} "
                    f"{state:<30} {counts}"
                )

        emit({"banks": banks}, json_mode, human)


@app.command()
def disable(
    name: NameArg,
    until: Annotated[
        str | None, typer.Option(help="ISO date or time (UTC if no zone); default: until enabled.")
    ] = None,
    content_id: Annotated[
        str | None, typer.Option(help="Disable only this content's signals (needs --until).")
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Stop matching a bank (or one content of it), for a while or until enabled again."""
    with database(json_mode) as db, db.sessions.begin() as s:
        when = store.parse_until(until) if until is not None else None
        out: dict[str, object] = {"bank": name, "until": when.isoformat() if when else None}
        if content_id is not None:
            if when is None:
                raise WorkbenchError(
                    "--content-id needs --until: an entry is disabled until a date"
                )
            out["content_id"] = content_id
            out["signals"] = store.disable_content(s, Actor.system(), name, content_id, when)
        else:
            store.disable_bank(s, Actor.system(), name, when)
        say(f"{name}{' ' + content_id if content_id else ''} disabled until {until or 'enabled'}")
        emit(out, json_mode, None)


@app.command()
def enable(name: NameArg, json_mode: JsonFlag = False) -> None:
    """Match a disabled bank again."""
    with database(json_mode) as db, db.sessions.begin() as s:
        store.enable_bank(s, Actor.system(), name)
        say(f"{name} enabled")
        emit({"bank": name, "enabled": True}, json_mode, None)
