"""A running round's signs of life: progress and log lines, and a heartbeat stamped from a thread,
each written only while this attempt still holds the round.

Why fenced by attempt: a worker that stalled (not died) may wake after another worker reclaimed
its round; its late writes must not overwrite the new attempt's log or outcome.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType

from sqlalchemy import ColumnElement, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from workbench.db.database import Database
from workbench.db.models import RoundStatus, TrainingRound
from workbench.db.rows import rows_changed
from workbench.db.types import utcnow
from workbench.errors import WorkbenchError

HEARTBEAT_SECONDS = 10.0
STALE_BEATS = 4
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class HeartbeatPolicy:
    """How often a running round's worker stamps `heartbeat_at`, how many missed beats make it
    dead, and how many attempts a round gets before a reclaim fails it instead of requeueing it.

    Every process that runs or reclaims rounds of one database should use the same interval:
    a reclaimer judges another worker's heartbeat by its own."""

    heartbeat_seconds: float = HEARTBEAT_SECONDS
    stale_beats: int = STALE_BEATS
    max_attempts: int = MAX_ATTEMPTS

    def __post_init__(self) -> None:
        if self.heartbeat_seconds <= 0 or self.stale_beats < 2 or self.max_attempts < 1:
            raise WorkbenchError(
                "heartbeat policy: expected heartbeat_seconds > 0, stale_beats >= 2 and "
                f"max_attempts >= 1; got {self.heartbeat_seconds}, {self.stale_beats}, "
                f"{self.max_attempts}"
            )

    @property
    def stale_after(self) -> timedelta:
        return timedelta(seconds=self.heartbeat_seconds * self.stale_beats)


class RoundReclaimed(WorkbenchError):
    """This attempt no longer holds the round: another worker reclaimed it."""


def _held(round_id: int, attempt: int | None) -> list[ColumnElement[bool]]:
    held = [TrainingRound.id == round_id, TrainingRound.status == RoundStatus.running]
    if attempt is not None:
        held.append(TrainingRound.attempts == attempt)
    return held


def stamp(session: Session, round_id: int, attempt: int | None, **values: object) -> bool:
    """Write `values` (and a fresh heartbeat) to the round if this attempt still holds it."""
    return bool(
        rows_changed(
            session,
            update(TrainingRound)
            .where(*_held(round_id, attempt))
            .values(heartbeat_at=utcnow(), **values)
            .execution_options(synchronize_session=False),
        )
    )


class RoundLog:
    """Progress and log lines written in their own short transactions, so the UI sees them
    while the round runs. Each line is a heartbeat too. Raises RoundReclaimed once the round
    belongs to another attempt, which stops a stalled worker's job at its next progress point.
    `attempt` None writes unfenced."""

    def __init__(self, db: Database, round_id: int, attempt: int | None = None) -> None:
        self.db, self.round_id, self.attempt = db, round_id, attempt
        self.lost = threading.Event()  # set by the heartbeat thread when it finds the round gone

    def __call__(self, message: str, progress: float | None = None) -> None:
        stamped = utcnow().strftime("%H:%M:%S")
        if self.lost.is_set():
            self._lose()
        with self.db.sessions.begin() as s:
            values: dict[str, object] = {"log": TrainingRound.log + f"[{stamped}] {message}\n"}
            if progress is not None:
                values["progress"] = max(0.0, min(1.0, progress))
            if not stamp(s, self.round_id, self.attempt, **values):
                self._lose()

    def confirm_claim(self, session: Session) -> None:
        """Raise RoundReclaimed unless this attempt still holds the round; called inside the
        transaction that commits the round's result, so a reclaimed attempt commits nothing."""
        if self.lost.is_set():
            self._lose()
        held = session.get(TrainingRound, self.round_id, populate_existing=True)
        if (
            held is None
            or held.status != RoundStatus.running
            or (self.attempt is not None and held.attempts != self.attempt)
        ):
            self._lose()

    def _lose(self) -> None:
        self.lost.set()
        raise RoundReclaimed(
            f"round id {self.round_id}: attempt {self.attempt} was reclaimed by another worker "
            "(its heartbeat went stale); this worker stops"
        )


class Heartbeat:
    """Stamps `heartbeat_at` every `seconds` from a daemon thread while the round runs, so a
    long step without progress lines (fitting, scoring) still shows the worker alive."""

    def __init__(self, log: RoundLog, seconds: float) -> None:
        self.log, self.seconds = log, seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"round-{log.round_id}-heartbeat", daemon=True
        )

    def beat(self) -> bool:
        with self.log.db.sessions.begin() as s:
            return stamp(s, self.log.round_id, self.log.attempt)

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                alive = self.beat()
            except SQLAlchemyError:  # the database is briefly unreachable: try the next beat
                continue
            if not alive:
                self.log.lost.set()
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
