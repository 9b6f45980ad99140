"""Evaluation sets: from a label file (several reviewers aggregated, all or nothing), sampled from
the pool with overlap and frozen once complete, versioned, retired; their items never trained on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eval_builders import build, held_out_rows, label_file, train
from quality_builders import Labels
from sqlalchemy import func, select

from workbench.db.database import Database
from workbench.db.models import (
    AuditEvent,
    EvaluationMember,
    EvaluationSet,
    Item,
    Project,
    QueueEntry,
    TrainingRound,
    User,
)


def _count(db: Database, model: Any) -> int:
    with db.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_create_from_a_label_file_aggregates_reviewers_and_freezes(
    db: Database, cli: Any, tmp_path: Path
) -> None:
    build(db)
    # x40 (truth none): two of three reviewers say spam; x41: one says hate, one unsure.
    rows = [("x40", "a", "spam"), ("x40", "b", "spam"), ("x40", "c", "none"), ("x41", "a", "hate")]
    path = label_file(tmp_path / "set.jsonl", rows)
    with path.open("a") as f:
        f.write(json.dumps({"external_id": "x41", "reviewer": "b", "decision": "unsure"}) + "\n")
    out = cli.json("evalset", "create", "public", "-p", "p", "--labels", path)
    assert out["status"] == "frozen" and out["version"] == 1 and out["kind"] == "labels_file"
    assert out["classes"] == {"hate": 1, "spam": 1} and out["n_items"] == 2
    assert out["source"]["rows"] == 5 and len(out["source"]["sha256"]) == 64
    with db.sessions() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "evalset.created")).one()
        assert event.details["items"] == 2
    # A new version is a new set; the first never changes.
    again = cli.json("evalset", "create", "public", "-p", "p", "--labels",
                     label_file(tmp_path / "v2.jsonl", [("x42", "a", "none")]))  # fmt: skip
    assert again["version"] == 2 and again["n_items"] == 1
    first = cli.json("evalset", "show", "public@1", "-p", "p")
    assert first["n_items"] == 2 and first["status"] == "frozen"
    listed = cli.json("evalset", "list", "-p", "p")["evalsets"]
    assert [(e["name"], e["version"]) for e in listed] == [("public", 1), ("public", 2)]


def test_a_label_file_naming_unknown_items_writes_nothing_and_names_line_and_id(
    db: Database, cli: Any, tmp_path: Path
) -> None:
    build(db)
    path = label_file(tmp_path / "bad.jsonl", [("x40", "a", "hate"), ("ghost", "a", "spam")])
    result = cli("evalset", "create", "public", "-p", "p", "--labels", path)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert "bad.jsonl:2" in result.stderr and "'ghost'" in result.stderr
    assert _count(db, EvaluationSet) == 0 and _count(db, EvaluationMember) == 0


def test_sample_is_stratified_queued_with_overlap_and_freezes_when_complete(
    db: Database, cli: Any
) -> None:
    build(db, languages=("en", "de"))  # x0.. half labelled; 60 unlabelled items in the pool
    out = cli.json("evalset", "sample", "golden", "-p", "p", "--n", "10", "--overlap", "2")
    assert out["status"] == "sampling" and out["n_items"] == 10
    assert out["strata"] == {"de/text": 5, "en/text": 5}  # proportional to 30 + 30
    with db.sessions() as s:
        entries = s.scalars(select(QueueEntry)).all()
        assert len(entries) == 10 and {e.overlap_target for e in entries} == {2}
        assert {e.strategy for e in entries} == {"evaluation"}
        # Each stratum's pool size, for design weights N_h / n_h (the DSA report's figures).
        (es,) = s.scalars(select(EvaluationSet)).all()
        assert es.source["stratum_sizes"] == {"de/text": 30, "en/text": 30}
        members = [m.item_id for m in s.scalars(select(EvaluationMember))]
        labelled = set(s.scalars(select(Item.id).where(Item.external_id.in_(
            [f"x{n}" for n in range(120) if n % 40 < 20]))))  # fmt: skip
        assert not set(members) & labelled  # drawn from the unlabelled pool only
    refused = cli.json("evalset", "freeze", "golden", "-p", "p", expect=1)
    assert "10 of 10 items still lack a final label" in refused["error"]
    with db.sessions.begin() as s:
        lab = Labels(s, s.scalars(select(Project)).one())
        lab.items = {i.external_id: i for i in s.scalars(select(Item).where(Item.id.in_(members)))}
        lab.n = 1000
        for n, ext in enumerate(sorted(lab.items)):
            lab.label(ext, "r1", "spam")
            if n < 9:
                lab.label(ext, "r2", "spam")
    assert cli.json("evalset", "show", "golden", "-p", "p")["status"] == "sampling"
    with db.sessions.begin() as s:
        lab = Labels(s, s.scalars(select(Project)).one())
        lab.items = {i.external_id: i for i in s.scalars(select(Item).where(Item.id.in_(members)))}
        lab.n = 2000
        lab.users = {u.name: u for u in s.scalars(select(User))}
        lab.label(sorted(lab.items)[-1], "r2", "spam")
    shown = cli.json("evalset", "show", "golden", "-p", "p")
    assert shown["status"] == "frozen" and shown["classes"] == {"spam": 10}
    retired = cli.json("evalset", "retire", "golden", "-p", "p")
    assert retired["status"] == "retired"


def test_a_sample_larger_than_the_pool_exits_1_and_writes_nothing(db: Database, cli: Any) -> None:
    build(db)
    out = cli.json("evalset", "sample", "golden", "-p", "p", "--n", "61", expect=1)
    assert "sample of 61 is larger than the pool of 60" in out["error"]
    assert _count(db, EvaluationSet) == 0 and _count(db, QueueEntry) == 0
    out = cli.json("evalset", "show", "nope", "-p", "p", expect=1)
    assert "no evaluation set 'nope'" in out["error"]


def test_items_in_evaluation_sets_are_never_trained_on_and_the_round_says_so(
    sqlite_db: Database, cli: Any, tmp_path: Path
) -> None:
    truth = build(sqlite_db)
    # Ten of the labelled training items go into a set: the round must leave them out.
    rows = [(f"x{n}", "ref", truth[n]) for n in range(10)]
    cli.json("evalset", "create", "held", "-p", "p", "--labels",
             label_file(tmp_path / "held.jsonl", rows))  # fmt: skip
    train(sqlite_db)
    with sqlite_db.sessions() as s:
        log = s.scalars(select(TrainingRound)).one().log
        assert "10 items held out in evaluation sets" in log
        from workbench.db.models import ModelVersion

        mv = s.scalars(select(ModelVersion)).one()
        assert mv.trained_on == 50 and mv.lineage["held_out_in_evaluation_sets"] == 10


def test_retired_sets_still_hold_their_items_out(
    sqlite_db: Database, cli: Any, tmp_path: Path
) -> None:
    truth = build(sqlite_db)
    cli.json("evalset", "create", "held", "-p", "p", "--labels",
             label_file(tmp_path / "held.jsonl",
                        [*held_out_rows(truth)[:3], ("x0", "ref", truth[0])]))  # fmt: skip
    cli.json("evalset", "retire", "held", "-p", "p")
    train(sqlite_db)
    with sqlite_db.sessions() as s:
        assert "1 items held out in evaluation sets" in s.scalars(select(TrainingRound)).one().log


def test_selection_never_queues_evaluation_set_items(
    sqlite_db: Database, cli: Any, tmp_path: Path
) -> None:
    truth = build(sqlite_db)
    rows = held_out_rows(truth)[:40]  # 40 of the 60 unlabelled items
    cli.json("evalset", "create", "held", "-p", "p", "--labels",
             label_file(tmp_path / "held.jsonl", rows))  # fmt: skip
    train(sqlite_db)
    from workbench.services.audit import Actor
    from workbench.services.select.batch import select_batch

    result = select_batch(sqlite_db, "p", "random", 100, Actor.system())
    assert result["queued"] == 20  # only the 20 unlabelled items outside the set
    with sqlite_db.sessions() as s:
        queued = set(
            s.scalars(select(Item.external_id).join(QueueEntry, QueueEntry.item_id == Item.id))
        )
    assert not queued & {ext for ext, _, _ in rows}
