"""`workbench bench pdq`: PDQ lookup in the bank index vs brute force and HMA's own index."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.bench.results import write_result
from workbench.cli._common import JsonFlag, emit, handled, say
from workbench.errors import WorkbenchError
from workbench.progress import stderr_progress


def register(app: typer.Typer) -> None:
    app.command("pdq")(pdq)


def pdq(
    n: Annotated[int, typer.Option("--n", help="Hashes in the index.", min=1000)] = 1_000_000,
    queries: Annotated[int, typer.Option(help="Lookups timed.", min=30)] = 1000,
    images: Annotated[
        int, typer.Option(help="Generated scenes hashed into the index (clustered hashes).", min=1)
    ] = 200,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    json_mode: JsonFlag = False,
) -> None:
    """Build time, lookup p50/p95, memory and recall of altered copies vs brute force."""
    from workbench.bench.pdq import run_pdq_benchmark

    with handled(json_mode):
        if n - images < queries // 3:
            raise WorkbenchError(
                f"--n {n} leaves {n - images} random hashes beside --images {images}; "
                f"a third of --queries {queries} are altered copies of them: raise --n"
            )
        result = run_pdq_benchmark(
            n=n, queries=queries, images=images, seed=seed, progress=stderr_progress
        )
        path = write_result("pdq", result)
        say(f"wrote {path}")
        emit(result, json_mode, lambda: print(result))
