"""`workbench retrain`, `workbench worker`, `workbench models`, `workbench select`."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit, fail, say
from workbench.db.models import ModelVersion, RoundStatus, TrainingRound
from workbench.services.audit import Actor
from workbench.services.projects import get_project


def register(app: typer.Typer) -> None:
    app.command()(retrain)
    app.command()(worker)
    app.command()(models)


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
    json_mode: JsonFlag = False,
) -> None:
    """Train a head on all current labels, score the pool, keep the better model.

    The new version is put in use unless its metrics on held-out randomly sampled labels are
    worse than the current one's. Runs here and now unless --queue.
    """
    from workbench.services.train.rounds import claim_next_round, request_round, run_claimed_round
    from workbench.services.train.worker import run_round_job

    with database(json_mode) as db:
        with db.sessions.begin() as s:
            p = get_project(s, project)
            rnd, created = request_round(s, p, Actor.system(), trigger="cli", refill_queue=refill)
            round_id, number = rnd.id, rnd.number
        if not created:
            say(f"round {number} is already queued or running; not starting another")
        if queue_only:
            emit({"round": number, "status": "queued"}, json_mode, f"queued round {number}")
            return
        with db.sessions.begin() as s:
            claimed = claim_next_round(s, "cli", round_id)
        if claimed is None or claimed.id != round_id:
            fail(f"round {number} was taken by a running worker; follow it there", json_mode)
        say(f"running round {number}")
        run_claimed_round(db, round_id, run_round_job)
        with db.sessions() as s:
            rnd = s.get_one(TrainingRound, round_id)
            out = _round_dict(rnd)
            if rnd.model_version_id:
                out["model"] = _model_dict(s.get_one(ModelVersion, rnd.model_version_id))
            log = rnd.log
        say(log.rstrip())
        if out["status"] != RoundStatus.succeeded.value:
            fail(f"round {number} failed: {out['error']}", json_mode)
        emit(out, json_mode, None)


def worker(
    once: Annotated[bool, typer.Option("--once", help="Run queued rounds, then exit.")] = False,
    poll_seconds: Annotated[float, typer.Option(help="Seconds between checks.")] = 2.0,
) -> None:
    """Run queued retrain rounds (and start rounds every N new labels) until stopped."""
    from workbench.services.train.worker import run_worker

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with database(False) as db:
        try:
            n = run_worker(db, once=once, poll_seconds=poll_seconds, stop=stop, say=say)
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
            "models": [_model_dict(m) for m in list_model_versions(s, p)],
            "rounds": [_round_dict(r) for r in list_rounds(s, p)],
        }

        def human() -> None:
            for m in result["models"]:
                print(
                    f"v{m['version']:<4} {m['status']:<10} macro-F1 "
                    f"{m['metrics'].get('macro_f1')}  ({m['metrics'].get('evaluation')})"
                )

        emit(result, json_mode, human)
