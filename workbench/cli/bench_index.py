"""`workbench bench knn`: FAISS index latency and recall on realistic vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.bench.results import write_result
from workbench.cli._common import JsonFlag, emit, handled, say
from workbench.progress import stderr_progress


def register(app: typer.Typer) -> None:
    app.command("knn")(knn)


def knn(
    data: Annotated[
        Path, typer.Option(help="CSV whose text column the mixture is fitted to.")
    ] = Path("../shared/data/davidson/labeled_data.csv"),
    text_column: Annotated[str, typer.Option(help="Text column.")] = "tweet",
    size: Annotated[int, typer.Option(help="Vectors in the index.", min=1000)] = 1_000_000,
    queries: Annotated[int, typer.Option(help="Held-out queries.", min=10)] = 1000,
    fit_texts: Annotated[
        int,
        # The mixture has 64 components; fewer texts fail inside scikit-learn.
        typer.Option(help="Texts embedded to fit the mixture (at least 64).", min=64),
    ] = 5000,
    json_mode: JsonFlag = False,
) -> None:
    """p50/p95 per-query latency and recall@10 against exact search, build time and memory."""
    from workbench.bench.knn import run_knn_benchmark

    with handled(json_mode):
        result = run_knn_benchmark(
            data,
            text_column,
            size=size,
            queries=queries,
            fit_texts=fit_texts,
            progress=stderr_progress,
        )
        path = write_result("knn", result)
        say(f"wrote {path}")
        emit(result, json_mode, lambda: print(result))
