"""`workbench retrain`, `workbench worker`, `workbench models`, `workbench select`."""

from __future__ import annotations

import os
import signal
import threading
from typing import Annotated, Any, cast

import typer

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit, fail, say
from workbench.cli._engine import EngineOpt
from workbench.db.models import ModelVersion, RoundStatus, TrainingRound
from workbench.services.audit import Actor
from workbench.services.projects import get_project
from workbench.services.train.progress import HEARTBEAT_SECONDS, STALE_BEATS, HeartbeatPolicy

# The training services load scikit-learn (about a second): they are imported inside the
# commands, so every other command starts without it.

TRACEBACK_START = "Traceback (most recent call last):"

# Every process running rounds of one database should beat at the same interval (a worker
# judges another's heartbeat by its own), hence one environment variable for all of them.
HeartbeatOpt = Annotated[
    float,
    typer.Option(
        envvar="WORKBENCH_ROUND_HEARTBEAT_SECONDS",
        min=0.01,
        help=f"Seconds between a running round's heartbeats; a round silent for {STALE_BEATS} "
        "beats is reclaimed by another worker.",
    ),
]


def register(app: typer.Typer) -> None:
    app.command()(retrain)
    app.command()(worker)
    # `models` is registered as a group by cli/models.py (with compare, promote, rollback).


def _round_dict(rnd: TrainingRound) -> dict[str, object]:
    return {
        "round": rnd.number,
        "status": rnd.status.value,
        "trigger": rnd.trigger,
        "error": rnd.error,
        "progress": rnd.progress,
        "model_version_id": rnd.model_version_id,
    }


def _model_dict(mv: ModelVersion) -> dict[str, object]:
    return {
        "version": mv.version,
        "status": mv.status.value,
        "head": mv.head,
        "classes": mv.classes,
        "metrics": mv.metrics,
        "calibrated": mv.calibrated,
        "calibration_note": mv.calibration_note,
        "trained_on": mv.trained_on,
        "created_at": mv.created_at.isoformat(),
        "scores_path": mv.scores_path,
    }


def retrain(
    project: ProjectOpt,
    queue_only: Annotated[
        bool, typer.Option("--queue", help="Only queue the round for `workbench worker`.")
    ] = False,
    refill: Annotated[
        bool, typer.Option("--refill/--no-refill", help="Refill the review queue afterwards.")
    ] = False,
    engine: EngineOpt = None,
    json_mode: JsonFlag = False,
    heartbeat_seconds: HeartbeatOpt = HEARTBEAT_SECONDS,
) -> None:
    """Train a head on all current labels, score the pool, keep the better model.

    The new version is put in use unless its metrics on held-out randomly sampled labels are
    worse than the current one's. Runs here and now unless --queue.
    """
    from workbench.services.train.rounds import run_round_now

    with database(json_mode) as db:
        run = run_round_now(
            db,
            project,
            Actor.system(),
            trigger="cli",
            refill_queue=refill,
            queue_only=queue_only,
            worker="cli",
            say=say,
            policy=HeartbeatPolicy(heartbeat_seconds),
            engine=engine.value if engine else None,
        )
        number = run.number
        if queue_only:
            emit({"round": number, "status": "queued"}, json_mode, f"queued round {number}")
            return
        with db.sessions() as s:
            rnd = s.get_one(TrainingRound, run.round_id)
            out = _round_dict(rnd)
            if rnd.model_version_id:
                out["model"] = _model_dict(s.get_one(ModelVersion, rnd.model_version_id))
            log = rnd.log
        # The round log keeps a failure's traceback for the models page; the terminal shows
        # it only with WORKBENCH_DEBUG, as every other failure (see _common.handled).
        shown = log if os.environ.get("WORKBENCH_DEBUG") else log.split(TRACEBACK_START)[0]
        if shown.strip():
            say(shown.rstrip())
        if out["status"] != RoundStatus.succeeded.value:
            fail(f"round {number} failed: {out['error']}", json_mode)
        emit(out, json_mode, None)


def worker(
    once: Annotated[bool, typer.Option("--once", help="Run queued rounds, then exit.")] = False,
    poll_seconds: Annotated[float, typer.Option(help="Seconds between checks.")] = 2.0,
    heartbeat_seconds: HeartbeatOpt = HEARTBEAT_SECONDS,
) -> None:
    """Run queued retrain rounds (and start rounds every N new labels) until stopped; take
    over rounds whose worker stopped sending heartbeats."""
    from workbench.services.train.worker import run_worker

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with database(False) as db:
        try:
            n = run_worker(
                db,
                once=once,
                poll_seconds=poll_seconds,
                stop=stop,
                say=say,
                policy=HeartbeatPolicy(heartbeat_seconds),
            )
        except KeyboardInterrupt:
            n = 0
        say(f"worker stopped after {n} rounds")


def models(project: ProjectOpt, json_mode: JsonFlag = False) -> None:
    """Model versions with their metrics, newest first, and recent rounds."""
    from workbench.services.train.rounds import list_rounds
    from workbench.services.train.train import list_model_versions

    with database(json_mode) as db, db.sessions() as s:
        p = get_project(s, project)
        result = {
            "models": [_model_dict(m) for m in list_model_versions(s, p, Actor.system())],
            "rounds": [_round_dict(r) for r in list_rounds(s, p, Actor.system())],
        }

        def human() -> None:
            for m in result["models"]:
                metrics = cast(dict[str, Any], m["metrics"])
                print(
                    f"v{m['version']:<4} {m['status']:<10} macro-F1 "
                    f"{metrics.get('macro_f1')}  ({metrics.get('evaluation')})"
                )

        emit(result, json_mode, human)
