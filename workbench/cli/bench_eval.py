"""`workbench bench eval`: interval coverage for precision, recall and prevalence, the stratified
prevalence plan against a simple random sample, and the time of the offline metrics of 100k
items, on the Davidson labels; the benchmark is `workbench.bench.eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from workbench.bench.results import write_result
from workbench.cli._common import JsonFlag, emit, handled, say


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_)


def eval_(
    data: Annotated[
        Path, typer.Option(help="Davidson labeled_data.csv (tweets with crowd votes).")
    ] = Path("../shared/data/davidson/labeled_data.csv"),
    reps: Annotated[int, typer.Option(help="Repeated samples per coverage figure.", min=10)] = 200,
    plan_n: Annotated[int, typer.Option("--plan-n", help="Prevalence sample size.", min=20)] = 400,
    strata: Annotated[int, typer.Option(help="Strata of the prevalence plan.", min=1)] = 10,
    evalset_n: Annotated[
        int, typer.Option("--evalset-n", help="Evaluation set size for precision/recall.", min=50)
    ] = 1000,
    resamples: Annotated[
        int, typer.Option(help="Bootstrap resamples of `workbench evaluate`'s intervals.", min=2)
    ] = 200,
    items: Annotated[int, typer.Option(help="Scored items for the timing.", min=1000)] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    json_mode: JsonFlag = False,
) -> None:
    """Coverage of the 95 % intervals (precision, recall, prevalence) over repeated samples,
    prevalence interval width of the stratified plan vs a simple random sample, and the time
    of the offline metrics of 100k scored items."""
    from workbench.bench.eval import eval_benchmark

    with handled(json_mode):
        result = eval_benchmark(
            data, reps=reps, plan_n=plan_n, strata=strata, evalset_n=evalset_n,
            bootstrap_resamples=resamples, timing_items=items, seed=seed, progress=say,
        )  # fmt: skip
        say(f"wrote {write_result('eval', result)}")
        emit(result, json_mode, lambda: _print(result))


def _print(result: dict[str, Any], indent: str = "") -> None:
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print(value, indent + "  ")
        else:
            print(f"{indent}{key}: {value}")
