"""`workbench demo`: set up the demo project from the fixtures, then serve the browser UI."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from workbench.cli._common import JsonFlag, database, emit, say
from workbench.progress import stderr_progress
from workbench.services.audit import Actor


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo(
    fixtures: Annotated[
        Path, typer.Option(help="Folder with manifest.jsonl and labels.jsonl.")
    ] = Path("fixtures/sample"),
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the UI when set up.")
    ] = True,
    port: Annotated[int, typer.Option(help="Port for the UI.")] = 8501,
    json_mode: JsonFlag = False,
) -> None:
    """Set up the demo project from the fixtures and serve the UI.

    Ingests the fixtures into project `demo`, imports their labels, creates demo users, embeds,
    trains, selects a first batch, prints the status and the users' credentials, then serves the
    UI (--no-serve stops before serving, for scripts). Running it twice is harmless; it refuses
    a database that holds users or projects it did not make (it sets passwords and roles).
    """
    # Here, not at the top: the demo loads every stage of the loop, scikit-learn included
    # (about a second), which the other commands never need.
    from workbench.services.demo import run_demo

    with database(json_mode) as db:
        result = run_demo(db, fixtures, Actor.system(), say=say, progress=stderr_progress)

        def human() -> None:
            st = result["status"]
            print(
                f"\nproject {result['project']}: {st['items']} items "
                f"({', '.join(f'{k} {v}' for k, v in st['items_by_modality'].items())}), "
                f"{st['labels']} labels, {st['embedded']} embedded, "
                f"{st['model_versions']} model versions, {st['queued']} queued"
            )
            print("\ndemo users (demo only; stored in WORKBENCH_HOME/demo-credentials.json):")
            for u in result["users"]:
                print(f"  {u['name']:<8} {u['role']:<9} password {u['password']}")

        emit(result, json_mode, human)
    if serve and not json_mode:
        say(f"\nserving the workbench at http://localhost:{port}  (Ctrl+C stops it)")
        os.execv(sys.executable, [sys.executable, "-m", "workbench", "serve", "--port", str(port)])
