"""`workbench select`: fill the review queue with a strategy or the project's mix."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit, say
from workbench.services.audit import Actor


def register(app: typer.Typer) -> None:
    app.command("select")(select_)


def select_(
    project: ProjectOpt,
    strategy: Annotated[
        str,
        typer.Option(
            help="mix (the project's selection_mix), or one of random, least_confidence, "
            "margin, entropy, ranked_batch, cluster_margin, coreset, seals, typiclust, kmeans; "
            "or mix:margin=0.7,random=0.3.",
        ),
    ] = "mix",
    batch: Annotated[
        int | None, typer.Option(help="Entries to add (default: project batch_size).", min=1)
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the random parts.")] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Rank the pool and queue a batch for review, each entry with its strategy and reason.

    Never picks items already queued, leased or labelled, nor two near-duplicates. With no
    model yet (cold start) it picks typical, diverse items instead.
    """
    # Here, not at the top: selection loads scikit-learn (about a second), which the other
    # commands never need.
    from workbench.services.select.batch import select_batch

    with database(json_mode) as db:
        result = select_batch(db, project, strategy, batch, Actor.system(), seed=seed)
        if result["cold_start"]:
            say("no model yet: cold start, picking typical and diverse items")
        say(f"queued {result['queued']} entries (batch {result['batch']}): {result['by_strategy']}")

        def human() -> None:
            for e in result["entries"]:
                print(f"{e['external_id']:<24} {e['strategy']:<15} {e['reason']}")

        emit(result, json_mode, human)
