"""`workbench apikey ...`: keys for the HTTP API (created with scopes, shown once, revoked)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from workbench.cli._common import JsonFlag, database, emit, say
from workbench.services.apikeys import SCOPES, create_api_key, list_api_keys, revoke_api_key
from workbench.services.audit import Actor

app = typer.Typer(help="API keys for `workbench api`.", no_args_is_help=True)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Key name (who or what uses it).")],
    scope: Annotated[
        list[str], typer.Option("--scope", help=f"Scope, repeatable: {', '.join(SCOPES)}.")
    ],
    json_mode: JsonFlag = False,
) -> None:
    """Create a key; its token is printed once and only a hash of it is stored."""
    with database(json_mode) as db, db.sessions.begin() as s:
        key, token = create_api_key(s, name, scope, Actor.system())
        say(f"created API key {key.name!r} with scopes {', '.join(key.scopes)}")
        say("the key is shown once; store it now:")
        emit({"name": key.name, "key": token, "scopes": key.scopes}, json_mode, token)


@app.command("list")
def list_(json_mode: JsonFlag = False) -> None:
    """Keys with their scopes, when made, last used and revoked (never the tokens)."""
    with database(json_mode) as db, db.sessions() as s:
        rows: list[dict[str, Any]] = [
            {
                "name": k.name,
                "scopes": k.scopes,
                "created_at": k.created_at.isoformat(),
                "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            }
            for k in list_api_keys(s)
        ]

        def human() -> None:
            for r in rows:
                state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
                print(f"{r['name']:<24} {','.join(r['scopes']):<12} {state}")

        emit({"keys": rows}, json_mode, human)


@app.command()
def revoke(
    name: Annotated[str, typer.Argument(help="Key name.")], json_mode: JsonFlag = False
) -> None:
    """Revoke a key: every later request with it gets 401."""
    with database(json_mode) as db, db.sessions.begin() as s:
        key = revoke_api_key(s, name, Actor.system())
        revoked = key.revoked_at.isoformat() if key.revoked_at else None
        emit({"name": key.name, "revoked_at": revoked}, json_mode, f"revoked {key.name!r}")
