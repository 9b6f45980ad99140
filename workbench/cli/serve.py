"""`workbench serve`: the browser app (Streamlit) and, beside it, a `workbench worker` and the
scan API (`workbench api`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from workbench.cli._common import database, say

# The ASGI app (`st.App`): the pages plus the routes that set and clear the login cookie.
APP = Path(__file__).resolve().parents[1] / "ui" / "web.py"


def streamlit_command(port: int, address: str) -> list[str]:
    """Headless, no usage statistics, no file watcher: a server, not a development loop.

    No full garbage collection after every rerun (`runner.postScriptGC`): with the lead page's
    libraries imported, the server tracks ~230k objects and one collection took 50-115 ms,
    blocking every session's rerun. Measured by `workbench bench review-latency` (Postgres,
    9 background reviewers): submit -> next item p95 408 -> 223 ms. CPython's generational
    collector still runs as objects are allocated.

    No error details in the browser (`client.showErrorDetails none`): an uncaught exception
    shows a generic message there, and its traceback, which can quote SQL, paths and reviewed
    content, goes to the server log only."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", address,
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--client.toolbarMode", "minimal",
        "--runner.postScriptGC", "false",
        "--client.showErrorDetails", "none",
    ]  # fmt: skip


def worker_command() -> list[str]:
    """`workbench worker`, which runs the retrain rounds, as this installation starts it."""
    exe = shutil.which("workbench")
    return [exe, "worker"] if exe else [sys.executable, "-m", "workbench.cli", "worker"]


def api_command(port: int, address: str) -> list[str]:
    """`workbench api`, as this installation starts it."""
    exe = shutil.which("workbench")
    base = [exe] if exe else [sys.executable, "-m", "workbench.cli"]
    return [*base, "api", "--host", address, "--port", str(port)]


def serve(
    port: Annotated[int, typer.Option(help="Port of the web app.")] = 8501,
    address: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not start a `workbench worker` beside it.")
    ] = False,
    no_api: Annotated[
        bool, typer.Option("--no-api", help="Do not start the scan API (`workbench api`).")
    ] = False,
    api_port: Annotated[int, typer.Option(help="Port of the scan API.")] = 8600,
) -> None:
    """Start the reviewer workbench in the browser (with a worker for retrain rounds and the
    scan API beside it)."""
    with database(False):
        pass  # fail early, with a clear message, if the database is unusable or out of date
    env = dict(os.environ)
    procs: list[subprocess.Popen[bytes]] = []
    worker = None if no_worker else worker_command()
    if worker is not None:
        procs.append(subprocess.Popen(worker, env=env))
        say(f"worker started (pid {procs[-1].pid})")
    api = None
    if not no_api:
        api = subprocess.Popen(api_command(api_port, address), env=env)
        say(f"scan API at http://{address}:{api_port} (docs at /docs; pid {api.pid})")
    web = subprocess.Popen(streamlit_command(port, address), env=env)
    procs.append(web)
    say(f"workbench at http://{address}:{port} (Ctrl+C stops it)")

    watched = list(procs)  # the UI and the worker: when one ends, everything stops
    if api is not None:
        procs.append(api)

    def stop(*_: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        api_reported = False
        while all(p.poll() is None for p in watched):
            # The API failing (its port taken, say) leaves the reviewers' UI up; it says why.
            if api is not None and not api_reported and api.poll() is not None:
                say(f"the scan API stopped (exit {api.returncode}); the UI keeps running")
                api_reported = True
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    code = web.returncode or 0
    raise typer.Exit(0 if code in (0, -signal.SIGTERM) else 1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command()(serve)
