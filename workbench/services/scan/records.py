"""Scan records and what a `review` decision does: the content becomes an item of the project
(through the ingest service, with its checks, media store and audit event) and is queued ahead
of active-learning and re-review entries, with the scan's reasons as the queue reason."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.db.database import Database
from workbench.db.models import EntryKind, Item, Project, Scan, ScanDecision
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor
from workbench.services.ingest.write import ingest_path
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.scan.content import ScanContent
from workbench.services.scan.decide import ScanOutcome

# Above mislabel re-review (1e6) and every selection strategy (rank-based, < 1e5): content held
# before publication waits for a person, so it is leased first.
SCAN_REVIEW_PRIORITY = 2_000_000.0
SCAN_STRATEGY = "scan"


def record_scan(
    session: Session,
    project_id: int,
    outcome: ScanOutcome,
    *,
    source: str,
    external_id: str | None,
    item_id: int | None,
    latency_ms: float | None,
    api_key_id: int | None = None,
    content_hash: str | None = None,
) -> Scan:
    scan = Scan(
        project_id=project_id,
        source=source,
        external_id=external_id,
        content_hash=content_hash,
        item_id=item_id,
        decision=outcome.decision,
        reasons=outcome.reasons,
        automated_detection=outcome.automated_detection,
        # `review` hands the decision to a person; allow and block are the machine's.
        automated_decision=outcome.decision != ScanDecision.review,
        degraded=outcome.degraded,
        model_version_id=outcome.model_version_id,
        latency_ms=latency_ms,
        api_key_id=api_key_id,
    )
    session.add(scan)
    session.flush()
    return scan


def queue_reason(reasons: list[dict[str, Any]]) -> str:
    """One line for the reviewer's queue: which bank or policy held the content."""
    parts = []
    for r in reasons:
        if r.get("source") == "hash":
            parts.append(f"bank {r['bank']} ({r['signal_type']}, distance {r['distance']})")
        elif r.get("source") == "model" and "policy" in r:
            parts.append(f"model v{r['model_version']}: {r['policy']} {r['score']:.2f}")
        elif "detail" in r:
            parts.append(str(r["detail"]))
    return "scan: " + ("; ".join(parts) if parts else "held for review")


def queue_for_review(
    session: Session, project: Project, item_id: int, outcome: ScanOutcome, actor: Actor
) -> bool:
    """Queue the item first in line; False when it already had an open entry."""
    scores = [r["score"] for r in outcome.reasons if r.get("source") == "model" and "score" in r]
    rows = enqueue(
        session,
        project,
        [
            NewEntry(
                item_id=item_id,
                kind=EntryKind.selected,
                strategy=SCAN_STRATEGY,
                score=max(scores) if scores else None,
                reason=queue_reason(outcome.reasons),
                priority=SCAN_REVIEW_PRIORITY,
            )
        ],
        actor,
        model_version_id=outcome.model_version_id,
    )
    return bool(rows)


def ingest_scanned_content(
    db: Database, project: str, content: ScanContent, actor: Actor
) -> tuple[int, str]:
    """Write the scanned content as an item of `project` through `ingest_path`; returns
    (item id, external id). An item has one asset per modality, so the first file of each
    modality is kept (the scan record keeps every reason)."""
    external_id = content.external_id or f"scan-{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory(prefix="wb-scan-") as tmp:
        row: dict[str, Any] = {"external_id": external_id}
        if content.text is not None:
            row["text"] = content.text
        if content.language is not None:
            row["language"] = content.language
        for f in content.files:
            if f.modality in row:
                continue
            name = f"{f.modality}.{f.info.extension}"
            (Path(tmp) / name).write_bytes(f.data)
            row[f.modality] = name
        manifest = Path(tmp) / "scan.jsonl"
        manifest.write_text(json.dumps(row) + "\n", encoding="utf-8")
        # update=True: a resubmitted upload with the same external_id replaces the old content,
        # which is what the reviewer must see.
        ingest_path(db.sessions, db.settings, manifest, project, actor, update=True)
    with db.sessions() as s:
        proj_id = s.scalar(select(Project.id).where(Project.name == project))
        item_id = s.scalar(
            select(Item.id).where(Item.project_id == proj_id, Item.external_id == external_id)
        )
    if item_id is None:  # ingest_path writes the item or finds it unchanged; never neither
        raise WorkbenchError(f"scanned content {external_id!r} was not ingested into {project!r}")
    return int(item_id), external_id
