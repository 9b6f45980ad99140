"""`workbench bench ...`: benchmarks that write results (date, machine, command) to benchmarks/."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Benchmarks. Each writes JSON with date, machine and command to ./benchmarks/.",
    no_args_is_help=True,
)


def _register_all() -> None:
    # Each benchmark family lives in its own module and adds its commands here.
    from workbench.cli import (
        bench_agreement,
        bench_al,
        bench_browser,
        bench_embed,
        bench_engine,
        bench_eval,
        bench_index,
        bench_pdq,
        bench_queue,
        bench_scan,
    )

    for module in (
        bench_embed,
        bench_index,
        bench_al,
        bench_agreement,
        bench_queue,
        bench_browser,
        bench_eval,
    ):
        module.register(app)
    bench_pdq.register(app)
    bench_scan.register(app)
    bench_engine.register(app)


_register_all()
