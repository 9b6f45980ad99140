"""`workbench scan` sweeps: decisions recorded per item, reviews queued, a dry run writes nothing,
and a sweep cut short resumes after its last committed batch without scanning an item twice."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from builders import make_items, make_project
from scan_builders import WordEncoder, lookup, make_champion
from sqlalchemy import func, select

from workbench.db.database import Database
from workbench.db.models import EnforcementDecision, QueueEntry, Scan, ScanSweep
from workbench.services.audit import Actor
from workbench.services.projects import get_project, set_project_setting
from workbench.services.scan.score import ChampionScorer
from workbench.services.scan.sweep import sweep_project

TEXTS = ["hateful one", "kind two", "kind three", "hateful four", "kind five", "kind six", "kind 7"]


class CrashingEncoder(WordEncoder):
    """Dies (as a killed process would) on its n-th call."""

    def __init__(self, crash_on: int) -> None:
        super().__init__()
        self.calls, self.crash_on = 0, crash_on

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.calls == self.crash_on:
            raise KeyboardInterrupt("simulated crash")
        return super().encode(batch)


@pytest.fixture
def swept_db(db: Database) -> Database:
    with db.sessions.begin() as s:
        project = make_project(s, "p")
        make_items(s, project, TEXTS)
    make_champion(db, "p", WordEncoder())
    with db.sessions.begin() as s:
        set_project_setting(
            s, get_project(s, "p"), "scan_thresholds", {"hate": {"review": 0.5}}, Actor.system()
        )
    return db


def _count(db: Database, model: type) -> int:
    with db.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_dry_run_counts_and_writes_nothing(swept_db: Database) -> None:
    scorer = ChampionScorer(swept_db.settings, lookup(WordEncoder()))
    report = sweep_project(swept_db, scorer, "p", Actor.system(), dry_run=True, batch_size=3)
    assert report.items == 7 and dict(report.decisions) == {"review": 2, "allow": 5}
    assert report.queued == 0 and report.sweep_id is None
    assert (
        _count(swept_db, Scan) == _count(swept_db, ScanSweep) == _count(swept_db, QueueEntry) == 0
    )


def test_sweep_records_every_item_and_queues_reviews(swept_db: Database) -> None:
    scorer = ChampionScorer(swept_db.settings, lookup(WordEncoder()))
    report = sweep_project(swept_db, scorer, "p", Actor.system(), batch_size=3)
    assert report.items == 7 and report.queued == 2 and report.model_status == "scored"
    assert report.totals == {"items": 7, "allow": 5, "review": 2, "block": 0, "failed": 0}
    with swept_db.sessions() as s:
        scans = list(s.scalars(select(Scan).order_by(Scan.item_id)))
        assert [sc.source for sc in scans] == ["sweep"] * 7
        assert len({sc.content_hash for sc in scans}) == 7
        held = {sc.external_id for sc in scans if sc.decision.value == "review"}
        assert held == {"i0", "i3"}
        entries = list(s.scalars(select(QueueEntry)))
        assert {e.strategy for e in entries} == {"scan"} and len(entries) == 2
    # A second sweep records again, but an item already queued is not queued twice.
    again = sweep_project(swept_db, scorer, "p", Actor.system())
    assert again.queued == 0 and _count(swept_db, Scan) == 14


def test_a_sweep_cut_short_resumes_after_its_last_committed_batch(swept_db: Database) -> None:
    crashing = ChampionScorer(swept_db.settings, lookup(CrashingEncoder(crash_on=5)))
    with pytest.raises(KeyboardInterrupt):
        sweep_project(swept_db, crashing, "p", Actor.system(), batch_size=2)
    # Batches of 2: items 1-2 and 3-4 committed; the crash came inside the third batch.
    assert _count(swept_db, Scan) == 4
    scorer = ChampionScorer(swept_db.settings, lookup(WordEncoder()))
    report = sweep_project(swept_db, scorer, "p", Actor.system(), batch_size=2)
    assert report.resumed_after_item > 0 and report.items == 3
    assert report.totals is not None and report.totals["items"] == 7
    with swept_db.sessions() as s:
        per_item = s.execute(select(Scan.item_id, func.count()).group_by(Scan.item_id)).all()
        assert len(per_item) == 7 and {n for _, n in per_item} == {1}
        assert s.scalar(select(ScanSweep.finished_at)) is not None


def test_scan_cli_sweeps_and_a_rerun_after_it_finished_starts_over(cli) -> None:  # type: ignore[no-untyped-def]
    from workbench.db.database import open_database

    db = open_database()
    try:
        with db.sessions.begin() as s:
            make_items(s, make_project(s, "q"), ["one", "two", "three"])
        dry = cli.json("scan", "-p", "q", "--dry-run")
        assert dry["items"] == 3 and dry["decisions"]["allow"] == 3 and _count(db, Scan) == 0
        first = cli.json("scan", "-p", "q")
        assert first["model_status"] == "no_champion" and first["totals"]["items"] == 3
        second = cli.json("scan", "-p", "q", "--since", "2000-01-01")
        assert second["items"] == 3 and second["resumed_after_item"] == 0
        assert _count(db, Scan) == 6 and _count(db, ScanSweep) == 2
    finally:
        db.dispose()
    assert "not a date" in cli.json("scan", "-p", "q", "--since", "yesterday", expect=1)["error"]


def test_sweep_matches_stored_media_against_the_banks(  # type: ignore[no-untyped-def]
    cli, tmp_path
) -> None:
    import io

    from workbench.bench.pdq import scene
    from workbench.db.database import open_database
    from workbench.services.scan.banks import match, store

    folder = tmp_path / "upload"
    folder.mkdir()
    bad = io.BytesIO()
    scene(31, size=(320, 240)).convert("RGB").save(bad, "JPEG", quality=90)
    (folder / "bad.jpg").write_bytes(bad.getvalue())
    scene(32, size=(320, 240)).convert("RGB").save(folder / "fine.jpg", "JPEG", quality=90)
    cli.json("ingest", str(folder), "-p", "m")
    match.invalidate()
    db = open_database()
    try:
        with db.sessions.begin() as s:
            store.create_bank(s, Actor.system(), "KNOWN_BAD", "block")
            store.add_file(s, Actor.system(), "KNOWN_BAD", bad.getvalue(), "image/jpeg")
        result = cli.json("scan", "-p", "m")
        assert result["decisions"] == {"allow": 1, "review": 0, "block": 1}, result
        with db.sessions() as s:
            (blocked,) = s.scalars(select(Scan).where(Scan.decision == "block"))
            assert blocked.external_id.endswith("bad.jpg")
            assert {r["bank"] for r in blocked.reasons} == {"KNOWN_BAD"}
    finally:
        db.dispose()
        match.invalidate()


def test_a_sweep_block_by_the_model_becomes_an_enforcement_decision(swept_db: Database) -> None:
    with swept_db.sessions.begin() as s:
        set_project_setting(
            s, get_project(s, "p"), "scan_thresholds", {"hate": {"block": 0.5}}, Actor.system()
        )
    scorer = ChampionScorer(swept_db.settings, lookup(WordEncoder()))
    report = sweep_project(swept_db, scorer, "p", Actor.system(), batch_size=3)
    assert dict(report.decisions) == {"block": 2, "allow": 5}
    assert report.enforcement_decisions == 2 and report.blocks_without_policy == 0
    with swept_db.sessions() as s:
        rows = list(s.scalars(select(EnforcementDecision).order_by(EnforcementDecision.item_id)))
        blocked = {sc.item_id for sc in s.scalars(select(Scan).where(Scan.decision == "block"))}
        assert {d.item_id for d in rows} == blocked
        assert all(d.origin.value == "scan" and d.automated_detection for d in rows)
        assert {d.policy_code for d in rows} == {"hate"}
    # A second sweep records its scans again, each block its own decision (its own scan ref).
    again = sweep_project(swept_db, scorer, "p", Actor.system())
    assert again.enforcement_decisions == 2 and _count(swept_db, EnforcementDecision) == 4
