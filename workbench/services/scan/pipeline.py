"""One pre-publish scan, end to end: check the content, match it against the banks, score it
with the champion within the deadline, decide, hold it for review if so, record it.

Hash checks run first because they are cheap and decisive: a bank match needs no model, and
when the deadline is short the answer still carries what the banks said.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.db.database import Database
from workbench.db.models import ScanDecision
from workbench.errors import WorkbenchError
from workbench.services.apikeys import ApiKeyInfo
from workbench.services.audit import Actor
from workbench.services.projects import get_project, project_settings
from workbench.services.scan.banks.match import BankMatch, match_media
from workbench.services.scan.content import (
    IncomingFile,
    ScanContent,
    ScanInputError,
    check_scan_content,
)
from workbench.services.scan.decide import ModelScores, decide
from workbench.services.scan.records import (
    ingest_scanned_content,
    queue_for_review,
    record_scan,
)
from workbench.services.scan.score import (
    ChampionScorer,
    LoadedChampion,
    NotScorable,
    ScanMedia,
)


@dataclass(frozen=True)
class ScanRequest:
    project: str
    text: str | None = None
    files: list[IncomingFile] = field(default_factory=list)
    external_id: str | None = None
    language: str | None = None
    deadline_ms: float | None = None


@dataclass(frozen=True)
class ScanAnswer:
    scan_id: int
    decision: str
    reasons: list[dict[str, Any]]
    latency_ms: float
    degraded: bool
    model: dict[str, Any]
    item_id: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reasons": self.reasons,
            "scan_id": self.scan_id,
            "latency_ms": self.latency_ms,
            "degraded": self.degraded,
            "model": self.model,
            "item_id": self.item_id,
        }


class Scanner:
    """The scan service of one process: the champion scorer and the pool that runs scoring
    against a deadline (a late score is abandoned, never waited for)."""

    def __init__(self, db: Database, scorer: ChampionScorer, *, score_workers: int = 4) -> None:
        self.db = db
        self.scorer = scorer
        # Read once: building the pydantic settings object from the environment costs
        # milliseconds, which a text scan cannot spare.
        self.limits = db.settings.ingest_limits()
        self._pool = ThreadPoolExecutor(max_workers=score_workers, thread_name_prefix="scan-score")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def scan(
        self, request: ScanRequest, key: ApiKeyInfo | None, *, started: float | None = None
    ) -> ScanAnswer:
        """Scan one upload. Raises ScanInputError (bad content), NotFoundError (project)."""
        started = time.perf_counter() if started is None else started
        if request.deadline_ms is not None and request.deadline_ms <= 0:
            raise ScanInputError(422, "deadline_ms", "must be a positive number of milliseconds")
        # A folder only for media (decoders read files): text scans make no file-system calls.
        with (
            tempfile.TemporaryDirectory(prefix="wb-scan-")
            if request.files
            else contextlib.nullcontext("")
        ) as tmp:
            content = check_scan_content(
                self.limits,
                Path(tmp),
                text=request.text,
                files=request.files,
                external_id=request.external_id,
                language=request.language,
            )
            return self._scan_checked(request, content, key, started)

    def _remaining_s(self, request: ScanRequest, started: float) -> float | None:
        if request.deadline_ms is None:
            return None
        return request.deadline_ms / 1000.0 - (time.perf_counter() - started)

    def _scan_checked(
        self, request: ScanRequest, content: ScanContent, key: ApiKeyInfo | None, started: float
    ) -> ScanAnswer:
        with self.db.sessions() as s:
            project = get_project(s, request.project)
            settings = project_settings(project)
            project_id = project.id
            matches = bank_matches(s, content)
            loaded = None if matches else self.scorer.current(s, project)
        degraded = False
        scores: ModelScores | None = None
        status = "skipped" if matches else "scored"
        if isinstance(loaded, str):
            status = loaded.split(":", 1)[0]
        elif isinstance(loaded, LoadedChampion):
            scores, status, degraded = self._score(loaded, content, request, started)
        outcome = decide(matches, scores, settings, model_status=status, degraded=degraded)
        if isinstance(loaded, str) and loaded.startswith("not_scorable"):
            outcome.reasons.append({"source": "model", "detail": loaded.split(": ", 1)[1]})
        actor = key.actor if key is not None else Actor.system()
        item_id = None
        external_id = content.external_id
        if outcome.decision == ScanDecision.review:
            try:
                item_id, external_id = ingest_scanned_content(
                    self.db, request.project, content, actor
                )
            except WorkbenchError as exc:
                # The decision stands (the uploader must hold the content); the record says
                # why no reviewer will see it, e.g. a concurrent upload with the same id.
                outcome.reasons.append(
                    {"source": "queue", "detail": f"not queued for review: {exc.message}"}
                )
        latency_ms = round((time.perf_counter() - started) * 1000.0, 2)
        with self.db.sessions.begin() as s:
            scan = record_scan(
                s,
                project_id,
                outcome,
                source="api",
                external_id=external_id,
                item_id=item_id,
                latency_ms=latency_ms,
                api_key_id=key.id if key is not None else None,
                content_hash=content.content_hash,
            )
            if item_id is not None:
                queue_for_review(s, get_project(s, request.project), item_id, outcome, actor)
            scan_id = scan.id
        model_info: dict[str, Any] = {"status": status}
        if scores is not None:
            model_info["version"] = scores.model_version
        return ScanAnswer(
            scan_id=scan_id,
            decision=outcome.decision.value,
            reasons=outcome.reasons,
            latency_ms=latency_ms,
            degraded=outcome.degraded,
            model=model_info,
            item_id=item_id,
        )

    def _score(
        self,
        loaded: LoadedChampion,
        content: ScanContent,
        request: ScanRequest,
        started: float,
    ) -> tuple[ModelScores | None, str, bool]:
        """(scores, model status, degraded)."""
        media = [ScanMedia(f.modality, f.path) for f in content.files]
        remaining = self._remaining_s(request, started)
        try:
            if remaining is None:
                return ChampionScorer.score(loaded, content.text, media), "scored", False
            if remaining <= 0:
                return None, "deadline", True
            future = self._pool.submit(ChampionScorer.score, loaded, content.text, media)
            try:
                return future.result(timeout=remaining), "scored", False
            except FutureTimeout:
                future.cancel()
                return None, "deadline", True
        except NotScorable:
            return None, "not_scorable", False


def bank_matches(session: Any, content: ScanContent) -> list[BankMatch]:
    """Every bank match of every file; a file the hashers cannot decode is bad input (422)."""
    found: list[BankMatch] = []
    for f in content.files:
        try:
            found.extend(
                match_media(session, f.data, f.info.mime_type, subject_key=content.external_id)
            )
        except WorkbenchError as exc:
            raise ScanInputError(422, f.field, exc.message) from None
    return found
