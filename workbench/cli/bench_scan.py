"""`workbench bench scan`: scan API latency and throughput over real HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.bench.results import write_result
from workbench.cli._common import JsonFlag, emit, handled, say
from workbench.progress import stderr_progress


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)


def scan(
    data: Annotated[
        Path,
        typer.Option(help="Labelled CSV whose texts are scanned (Davidson's: class 0 is hate)."),
    ] = Path("../shared/data/davidson/labeled_data.csv"),
    text_column: Annotated[str, typer.Option(help="Text column.")] = "tweet",
    clients: Annotated[int, typer.Option(help="Concurrent text clients.", min=1)] = 8,
    seconds: Annotated[float, typer.Option(help="Length of the text phase.", min=1.0)] = 20.0,
    jpeg_scans: Annotated[int, typer.Option(help="640x480 JPEG scans, one at a time.", min=1)] = 40,
    bank_hashes: Annotated[int, typer.Option(help="Random PDQ hashes in the bank.", min=1)] = 1000,
    database_url: Annotated[
        str | None, typer.Option(help="Postgres URL of an empty database (default: SQLite).")
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Text scans p50/p95 and scans/s with concurrent clients; 640x480 JPEG p95; 5xx and lost
    scan records counted. `workbench api` runs as its own process on a fresh home."""
    from workbench.bench.scan import run_scan_benchmark  # here: loads the encoder and FastAPI

    with handled(json_mode):
        result = run_scan_benchmark(
            data,
            text_column,
            clients=clients,
            seconds=seconds,
            jpeg_scans=jpeg_scans,
            bank_hashes=bank_hashes,
            database_url=database_url,
            progress=stderr_progress,
        )
        path = write_result("scan", result)
        say(f"wrote {path}")

        def human() -> None:
            t, j = result["text"], result["jpeg_640x480"]
            print(
                f"text: p50 {t['p50_ms']} ms, p95 {t['p95_ms']} ms, {t['scans_per_s']} scans/s "
                f"({result['clients']} clients); jpeg p95 {j['p95_ms']} ms; "
                f"5xx {result['server_5xx']}; lost records {result['lost_records']}"
            )

        emit(result, json_mode, human)
