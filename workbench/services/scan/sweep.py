"""Proactive detection: sweep a project's catalogue with the banks and the champion, record a
decision per item, queue what needs review. Resumable: items go in id order and each batch
commits its decisions with the sweep's checkpoint (`ScanSweep.last_item_id`), so a rerun after a
crash continues after the last batch that committed. A dry run writes nothing and counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from workbench.db.database import Database
from workbench.db.models import Item, Project, ScanDecision, ScanSweep
from workbench.db.types import utcnow
from workbench.errors import WorkbenchError
from workbench.progress import ProgressFactory, no_progress
from workbench.schemas import ProjectSettings
from workbench.services.audit import Actor, record_event
from workbench.services.projects import get_project, project_settings
from workbench.services.report.decisions import record_scan_decision
from workbench.services.scan.banks.match import BankMatch, match_media
from workbench.services.scan.content import scan_content_hash
from workbench.services.scan.decide import ModelScores, ScanOutcome, decide
from workbench.services.scan.records import queue_for_review, record_scan
from workbench.services.scan.score import ChampionScorer, LoadedChampion, NotScorable, ScanMedia


@dataclass
class SweepReport:
    project: str
    dry_run: bool
    since: str | None
    sweep_id: int | None = None
    resumed_after_item: int = 0
    items: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    # DSA enforcement decisions made for blocked items; bank blocks carry no policy, so they
    # are counted apart until banks name one (a statement of reasons needs a category); the
    # DSA report counts them from the scans table as solely automated measures.
    enforcement_decisions: int = 0
    blocks_without_policy: int = 0
    queued: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    model_status: str = "no_champion"
    # The whole sweep's counts, this run and the runs it resumed (None for a dry run).
    totals: dict[str, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "dry_run": self.dry_run,
            "since": self.since,
            "sweep_id": self.sweep_id,
            "resumed_after_item": self.resumed_after_item,
            "items": self.items,
            "decisions": {d.value: self.decisions.get(d.value, 0) for d in ScanDecision},
            "queued": self.queued,
            "enforcement_decisions": self.enforcement_decisions,
            "blocks_without_policy": self.blocks_without_policy,
            "failed": len(self.failed),
            "failures": self.failed[:50],
            "model_status": self.model_status,
            "totals": self.totals,
        }


def _open_sweep(session: Session, project: Project, since: datetime | None) -> ScanSweep | None:
    """The unfinished sweep of this project with the same `since`, if a run was cut short."""
    q = select(ScanSweep).where(ScanSweep.project_id == project.id, ScanSweep.finished_at.is_(None))
    q = q.where(ScanSweep.since.is_(None) if since is None else ScanSweep.since == since)
    return session.scalar(q.order_by(ScanSweep.id.desc()).limit(1))


def _todo(project_id: int, since: datetime | None, after: int):  # type: ignore[no-untyped-def]
    q = select(Item.id).where(Item.project_id == project_id, Item.id > after)
    if since is not None:
        q = q.where(Item.updated_at >= since)
    return q


def sweep_project(
    db: Database,
    scorer: ChampionScorer,
    project_name: str,
    actor: Actor,
    *,
    since: datetime | None = None,
    dry_run: bool = False,
    batch_size: int = 200,
    progress: ProgressFactory = no_progress,
) -> SweepReport:
    report = SweepReport(project_name, dry_run, since.isoformat() if since else None)
    with db.sessions.begin() as s:
        project = get_project(s, project_name)
        project_id = project.id
        sweep = None if dry_run else _open_sweep(s, project, since)
        if sweep is None and not dry_run:
            sweep = ScanSweep(project_id=project_id, since=since, last_item_id=0, counts={})
            s.add(sweep)
            s.flush()
        after = sweep.last_item_id if sweep is not None else 0
        report.sweep_id = sweep.id if sweep is not None else None
        report.resumed_after_item = after
        total = s.scalar(
            select(func.count()).select_from(_todo(project_id, since, after).subquery())
        )
    bar = progress(total=total or 0, desc="scan")
    try:
        while True:
            with db.sessions.begin() as s:
                project = s.get_one(Project, project_id)
                settings = project_settings(project)
                ids = list(
                    s.scalars(_todo(project_id, since, after).order_by(Item.id).limit(batch_size))
                )
                if not ids:
                    break
                loaded = scorer.current(s, project)
                report.model_status = loaded if isinstance(loaded, str) else "scored"
                items = s.scalars(
                    select(Item)
                    .where(Item.id.in_(ids))
                    .order_by(Item.id)
                    .options(selectinload(Item.assets))
                )
                batch: Counter[str] = Counter()
                for item in items:
                    outcome = _decide_item(db, s, item, loaded, settings, report)
                    report.items += 1
                    if outcome is None:
                        batch["failed"] += 1
                        continue
                    report.decisions[outcome.decision.value] += 1
                    batch[outcome.decision.value] += 1
                    if dry_run:
                        continue
                    scan = record_scan(
                        s,
                        project_id,
                        outcome,
                        source="sweep",
                        external_id=item.external_id,
                        item_id=item.id,
                        latency_ms=None,
                        content_hash=scan_content_hash(item.text, [a.sha256 for a in item.assets]),
                    )
                    if outcome.decision == ScanDecision.block:
                        _enforce_block(s, project, item, outcome, scan.id, actor, report)
                    if outcome.decision == ScanDecision.review and queue_for_review(
                        s, project, item.id, outcome, actor
                    ):
                        report.queued += 1
                after = ids[-1]
                if sweep is not None:
                    # The checkpoint commits with the batch's decisions: all or none of them.
                    row = s.get_one(ScanSweep, sweep.id)
                    row.last_item_id = after
                    batch["items"] = len(ids)
                    row.counts = {
                        k: int((row.counts or {}).get(k, 0)) + batch[k]
                        for k in ("items", "allow", "review", "block", "failed")
                    }
            bar.update(len(ids))
    finally:
        bar.close()
    if sweep is not None:
        with db.sessions.begin() as s:
            row = s.get_one(ScanSweep, sweep.id)
            row.finished_at = utcnow()
            report.totals = dict(row.counts or {})
            record_event(
                s,
                actor,
                "scan.sweep",
                project_id=project_id,
                entity_type="scan_sweep",
                entity_id=sweep.id,
                details=report.as_dict() | {"failures": len(report.failed)},
            )
    return report


def _enforce_block(
    session: Session,
    project: Project,
    item: Item,
    outcome: ScanOutcome,
    scan_id: int,
    actor: Actor,
    report: SweepReport,
) -> None:
    """A live item the sweep blocks is an own-initiative, fully automated enforcement decision
    (reporting needs it); the policy is the highest-scoring one over its block threshold."""
    blocking = [r for r in outcome.reasons if r.get("action") == "block" and "policy" in r]
    if not blocking:
        report.blocks_without_policy += 1
        return
    top = max(blocking, key=lambda r: r["score"])
    record_scan_decision(
        session,
        project,
        item,
        policy_code=top["policy"],
        scan_ref=f"scan-{scan_id}",
        actor=actor,
        facts=(
            f"Automated catalogue scan: model version {top['model_version']} scored "
            f"{top['score']:.3f} for {top['policy']}, at or above the block threshold "
            f"{top['threshold']}."
        ),
    )
    report.enforcement_decisions += 1


def _decide_item(
    db: Database,
    session: Session,
    item: Item,
    loaded: LoadedChampion | str,
    settings: ProjectSettings,
    report: SweepReport,
) -> ScanOutcome | None:
    matches: list[BankMatch] = []
    media: list[ScanMedia] = []
    try:
        for asset in item.assets:
            path = db.settings.media_dir / asset.store_path
            matches.extend(
                match_media(
                    session, path.read_bytes(), asset.mime_type, subject_key=item.external_id
                )
            )
            media.append(ScanMedia(asset.modality.value, path))
    except (OSError, WorkbenchError) as exc:
        report.failed.append({"external_id": item.external_id, "reason": str(exc)[:300]})
        return None
    scores: ModelScores | None = None
    status = loaded if isinstance(loaded, str) else "scored"
    if matches:
        status = "skipped"
    elif isinstance(loaded, LoadedChampion):
        try:
            scores = ChampionScorer.score(loaded, item.text, media)
        except NotScorable:
            status = "not_scorable"
    return decide(matches, scores, settings, model_status=status.split(":", 1)[0])
