"""`workbench bench engine`: local against Ray engine on the same texts (the benchmark is
`workbench.bench.engine`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.bench.results import write_result
from workbench.cli._common import JsonFlag, emit, handled, say


def register(app: typer.Typer) -> None:
    app.command("engine")(engine)


def engine(
    texts: Annotated[
        int, typer.Option("--texts", help="Texts to embed (the first N).", min=2)
    ] = 2000,
    data: Annotated[Path, typer.Option(help="CSV with a text column.")] = Path(
        "../shared/data/davidson/labeled_data.csv"
    ),
    text_column: Annotated[str, typer.Option(help="Text column.")] = "tweet",
    batch_size: Annotated[int, typer.Option(help="Items per encoder batch.", min=1)] = 128,
    actors: Annotated[
        int, typer.Option(help="Ray actors (0 = one per CPU of the Ray cluster).", min=0)
    ] = 0,
    json_mode: JsonFlag = False,
) -> None:
    """Throughput of `workbench embed` with the local engine and with Ray, vectors compared."""
    from workbench.bench.engine import engine_benchmark

    with handled(json_mode):
        result = engine_benchmark(
            data,
            text_column,
            texts=texts,
            batch_size=batch_size,
            actors=actors or None,
            progress=say,
        )
        path = write_result("engine", result)
        say(f"wrote {path}")

        def human() -> None:
            print(f"local {result['local']['texts_per_s']} texts/s")
            print(
                f"ray   {result['ray']['texts_per_s']} texts/s "
                f"(+{result['ray']['start_seconds']} s start)"
            )
            print(f"vectors: {result['vectors']}")

        emit(result, json_mode, human)
