"""`workbench api`: serve the HTTP API (FastAPI on uvicorn)."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli._common import handled, say

DEFAULT_PORT = 8600


def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = DEFAULT_PORT,
) -> None:
    """Serve the scan API (docs at /docs). Stop with Ctrl+C."""
    from workbench.api.app import create_app, make_server  # FastAPI only for this command
    from workbench.db.database import open_database

    with handled(False):
        db = open_database()
    try:
        server = make_server(create_app(db), host, port, log_level="info")
        say(f"scan API at http://{host}:{port} (docs at /docs; Ctrl+C stops it)")
        server.run()
    finally:
        db.dispose()


def register(app: typer.Typer) -> None:
    app.command()(api)
