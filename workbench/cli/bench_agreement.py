"""`workbench bench agreement` (a real crowd: Davidson et al. 2017) and `agreement-scale`
(the full agreement computation over a million synthetic labels, bootstrap included); the
benchmarks are `workbench.bench.agreement`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from workbench.bench.agreement import agreement_scale_benchmark, davidson_crowd_benchmark
from workbench.bench.results import write_result
from workbench.cli._common import JsonFlag, emit, handled, say


def register(app: typer.Typer) -> None:
    """Add this module's commands to `workbench bench`."""
    app.command("agreement")(agreement)
    app.command("agreement-scale")(agreement_scale)


def agreement(
    data: Annotated[
        Path, typer.Option(help="Davidson labeled_data.csv (vote counts per tweet).")
    ] = Path("../shared/data/davidson/labeled_data.csv"),
    json_mode: JsonFlag = False,
) -> None:
    """The crowd's Fleiss' kappa and alpha, and Dawid–Skene vs majority vote on the same votes."""
    with handled(json_mode):
        result = davidson_crowd_benchmark(data)
        say(f"wrote {write_result('agreement-davidson', result)}")
        emit(result, json_mode, lambda: _print_flat(result))


def agreement_scale(
    labels: Annotated[int, typer.Option("--labels", min=1000, help="Synthetic labels.")] = (
        1_000_000
    ),
    reviewers: Annotated[int, typer.Option(help="Synthetic reviewers.", min=10)] = 200,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    json_mode: JsonFlag = False,
) -> None:
    """Time the whole `agreement` computation (counts, alpha, Fleiss, percent, pairwise Cohen,
    bootstrap intervals) over synthetic labels shaped like the Davidson crowd."""
    with handled(json_mode):
        result = agreement_scale_benchmark(labels, reviewers=reviewers, seed=seed)
        say(f"wrote {write_result('agreement-scale', result)}")
        emit(result, json_mode, lambda: _print_flat(result))


def _print_flat(result: dict[str, Any], indent: str = "") -> None:
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print_flat(value, indent + "  ")
        else:
            print(f"{indent}{key}: {value}")
