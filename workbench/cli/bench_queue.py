"""`workbench bench queue` and `workbench bench queue-latency`: the review queue under many
simulated reviewers (some killed mid-lease), and the single-item path's latency as it grows."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.bench.results import write_result
from workbench.cli._common import JsonFlag, database, emit, say


def queue(
    project: Annotated[str, typer.Option("--project", "-p", help="Project (made if missing).")],
    workers: Annotated[int, typer.Option(min=1, max=512, help="Simulated reviewers.")] = 8,
    items: Annotated[int, typer.Option(min=1, help="Synthetic items added for this run.")] = 1000,
    overlap: Annotated[int, typer.Option(min=1, max=20, help="Reviewers per item.")] = 1,
    kill_fraction: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Share of workers killed mid-lease.")
    ] = 0.0,
    lease_seconds: Annotated[
        int, typer.Option(min=10, help="Lease length for the project (killed leases wait it).")
    ] = 10,
    batch: Annotated[
        int, typer.Option(min=1, max=1000, help="Leases each reviewer takes and submits at once.")
    ] = 20,
    json_mode: JsonFlag = False,
) -> None:
    """Throughput of the batched queue path with killed reviewers: duplicates and lost must be 0.

    The labels stay in the database (one reviewer per worker), so `workbench labels export`
    shows them.
    """
    from workbench.bench.queue import run_queue_benchmark

    with database(json_mode) as db:
        if workers > items * overlap:
            say("note: more workers than label slots; some will find nothing to do")
        result = run_queue_benchmark(
            db,
            project,
            workers=workers,
            items=items,
            overlap=overlap,
            kill_fraction=kill_fraction,
            lease_seconds=lease_seconds,
            batch=batch,
            progress=say,
        )
        path = write_result(f"queue-{result['backend']}", result)
        say(f"wrote {path}")
        emit(
            result,
            json_mode,
            f"{result['acknowledged']} labels in {result['seconds']}s "
            f"({result['labels_per_second']}/s end to end, {result['steady_labels_per_second']}/s "
            f"before the killed leases' expiry) on {result['backend']}, {workers} workers, "
            f"{result['killed']} killed; duplicates {result['duplicates']}, lost {result['lost']}",
        )
        if result["duplicates"] or result["lost"] or result["labels_without_audit"]:
            raise typer.Exit(1)


def queue_latency(
    sizes: Annotated[
        str, typer.Option(help="Queued items per project, comma separated (e.g. 10000,1e6).")
    ] = "10000,100000,1000000",
    iterations: Annotated[int, typer.Option(min=10, help="Timed lease + submit pairs.")] = 200,
    priority: Annotated[
        str, typer.Option(help="'equal' (enqueue's default, the worst case) or 'ranked'.")
    ] = "equal",
    project_prefix: Annotated[
        str, typer.Option(help="Projects are named PREFIX-PRIORITY-SIZE and reused.")
    ] = "latency",
    batch: Annotated[int, typer.Option(min=1, max=1000, help="Batch of the batched path.")] = 20,
    json_mode: JsonFlag = False,
) -> None:
    """p50/p95 of one reviewer's lease_next + submit_review (the review page's path) as the
    queue grows, beside the batched path's time per label."""
    from workbench.bench.queue import iter_sizes, run_latency_benchmark

    with database(json_mode) as db:
        result = run_latency_benchmark(
            db,
            list(iter_sizes(sizes)),
            iterations=iterations,
            project_prefix=project_prefix,
            priority=priority,
            batch=batch,
            progress=say,
        )
        path = write_result(f"queue-latency-{result['backend']}", result)
        say(f"wrote {path}")
        emit(
            result,
            json_mode,
            "\n".join(
                f"{r['size']:>10,} items: lease+submit p50 {r['lease_and_submit']['p50_ms']} ms, "
                f"p95 {r['lease_and_submit']['p95_ms']} ms (lease {r['lease_next']['p50_ms']}, "
                f"submit {r['submit_review']['p50_ms']}); batched "
                f"{r['batched']['per_label']['p50_ms']} ms/label"
                for r in result["sizes"]
            ),
        )


def register(app: typer.Typer) -> None:
    """Add this module's commands to `workbench bench`."""
    app.command("queue")(queue)
    app.command("queue-latency")(queue_latency)
