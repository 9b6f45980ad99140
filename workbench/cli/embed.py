"""`workbench embed` and `workbench similar`."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit, fail, say
from workbench.cli._engine import EngineOpt
from workbench.progress import stderr_progress
from workbench.services.audit import Actor
from workbench.services.projects import get_project
from workbench.services.vectors.embed import embed_project
from workbench.services.vectors.similar import similar_items
from workbench.services.vectors.spaces import FUSED


def register(app: typer.Typer) -> None:
    app.command()(embed)
    app.command()(similar)


def embed(
    project: ProjectOpt,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 if any item failed to embed.")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Try items that failed before again.")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Items per encoder batch.", min=1)] = 128,
    engine: EngineOpt = None,
    json_mode: JsonFlag = False,
) -> None:
    """Embed new, changed and outdated items; fuse; update the FAISS indexes.

    Incremental and resumable: run it again after adding items or after a crash. A corrupt or
    undecodable asset is recorded as a failure on its item and the run goes on.
    """
    with database(json_mode) as db:
        report = embed_project(
            db,
            project,
            Actor.system(),
            batch_size=batch_size,
            retry_failed=retry_failed,
            progress=stderr_progress,
            engine=engine.value if engine else None,
        )
        result = report.as_dict()
        for f in report.failures[:50]:
            say(f"failed: {f['external_id']} ({f['space']}): {f['reason']}")
        if len(report.failures) > 50:
            say(f"... and {len(report.failures) - 50} more failures (see --json)")
        say(
            f"embedded {result['embedded']} vectors, {result['failed']} failures, "
            f"{result['near_duplicate_items']} items in near-duplicate groups"
        )

        def human() -> None:
            for name, sp in result["spaces"].items():
                print(
                    f"{name:<6} {sp['encoder']:<16} embedded {sp['embedded']:>7}  "
                    f"failed {sp['failed']:>5}  index {sp['index_kind']} ({sp['indexed']})"
                )

        emit(result, json_mode, human)
        if strict and report.failed:
            fail(f"{report.failed} items failed to embed (--strict)", json_mode)


def similar(
    project: ProjectOpt,
    item: Annotated[
        str | None, typer.Option("--item", help="External id of the query item.")
    ] = None,
    text: Annotated[str | None, typer.Option("--text", help="Free-text query.")] = None,
    k: Annotated[int, typer.Option("-k", help="Number of neighbours.", min=1)] = 10,
    space: Annotated[
        str, typer.Option(help="Vector space: fused, text, image, audio or video.")
    ] = FUSED,
    json_mode: JsonFlag = False,
) -> None:
    """Items most similar to an item (never the item itself) or to a text query, best first."""
    with database(json_mode) as db, db.sessions.begin() as s:
        result = similar_items(
            s, db.settings, get_project(s, project), external_id=item, text=text, k=k, space=space
        )

        def human() -> None:
            for n in result["neighbours"]:
                print(f"{n['score']:.4f}  {n['external_id']}")

        emit(result, json_mode, human)
