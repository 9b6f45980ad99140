"""The loop's commands through the real app on one project with real MiniLM vectors: `demo` sets
it up from fixtures/sample once for this module (SQLite), then status, similar, select, retrain,
worker and models run on it, and embed on a small project of its own."""

from __future__ import annotations

import csv
import json
import signal
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI
from sqlalchemy import distinct, func, select

from workbench.config import Settings
from workbench.db.database import Database, open_database
from workbench.db.models import (
    DecisionAppeal,
    Embedding,
    EmbeddingSpace,
    EmbeddingStatus,
    EntryStatus,
    Item,
    Label,
    ModelVersion,
    Project,
    QueueEntry,
)
from workbench.services.demo import (
    DEMO_PREVALENCE_N,
    DEMO_PREVALENCE_POLICY,
    DEMO_PROJECT,
    DEMO_USERS,
)
from workbench.services.evaluate.prevalence import estimate_prevalence
from workbench.services.report.transparency import default_period

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sample"


@dataclass
class Loop:
    home: Path
    db: Database
    demo: dict[str, Any]  # what the first `workbench demo --json` printed


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    root = tmp_path_factory.mktemp("loop")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_HOME", str(root / "home"))
        mp.delenv("WORKBENCH_DATABASE_URL", raising=False)
        demo = CLI().json("demo", "--fixtures", str(FIXTURES), "--no-serve")
        db = open_database(Settings())
        try:
            yield Loop(root / "home", db, demo)
        finally:
            db.dispose()


@pytest.fixture
def keep_sigterm() -> Iterator[None]:
    """`workbench worker` installs a SIGTERM handler; the test process keeps its own."""
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


def _lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def _pending(db: Database) -> list[int]:
    with db.sessions() as s:
        return list(
            s.scalars(select(QueueEntry.item_id).where(QueueEntry.status == EntryStatus.pending))
        )


def test_demo_sets_up_a_trained_project_and_a_second_run_changes_nothing(loop: Loop) -> None:
    status = loop.demo["status"]
    assert loop.demo["project"] == status["project"] == DEMO_PROJECT
    evaluation = FIXTURES / "evaluation"
    assert (
        status["items"]
        == status["embedded"]
        == _lines(FIXTURES / "manifest.jsonl") + _lines(evaluation / "items.jsonl")
    )
    # The imported files, and the demo reviewers' reviews of the prevalence sample (through
    # leases); the golden set's own labels stay out of the project's labels.
    with loop.db.sessions() as s:
        reviewed = s.scalar(select(func.count()).where(Label.idempotency_key.like("lease:%")))
        prevalence_pending = s.scalar(
            select(func.count()).where(
                QueueEntry.strategy == "prevalence", QueueEntry.status == EntryStatus.pending
            )
        )
    assert reviewed and status["labels"] == reviewed + sum(
        _lines(f) for f in (FIXTURES / "labels.jsonl", *evaluation.glob("labels-round*.jsonl"))
    )
    # Two rounds: the second's challenger judged on the frozen golden set (the evaluation page's
    # verdict).
    assert status["embedding_failures"] == 0 and status["model_versions"] == 2
    assert status["queued"] == 20 + prevalence_pending
    assert all(status["items_by_modality"][m] > 0 for m in ("text", "image", "audio", "video"))
    users = loop.demo["users"]
    assert [(u["name"], u["role"]) for u in users] == [(n, r.value) for n, r in DEMO_USERS]
    credentials = loop.home / "demo-credentials.json"
    assert json.loads(credentials.read_text()) == {u["name"]: u["password"] for u in users}
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600

    before = CLI().json("status", "-p", DEMO_PROJECT)
    again = CLI().json("demo", "--fixtures", str(FIXTURES), "--no-serve")
    assert again["status"] == before and again["users"] == users


def test_the_demos_dsa_report_has_accuracy_figures(loop: Loop, tmp_path: Path) -> None:
    with loop.db.sessions() as s:
        period = default_period(s, s.scalar(select(Project).where(Project.name == DEMO_PROJECT)))
    out = tmp_path / "report"
    CLI().json("dsa", "report", "-p", DEMO_PROJECT, "--period", period, "--out", str(out))
    with (out / "automated_means.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh)
                if r["Indicator"] == "Accuracy of the automated means - Accuracy"]  # fmt: skip
    # The whole sample, then English (the only language with enough items for a figure).
    assert [r["Scope"] for r in rows] == ["Total number", "en"]
    assert all(0.0 <= float(r["Value"]) <= 1.0 for r in rows)
    # The demo's prevalence plan is a design-based sample of the pool, preferred over its
    # label-file golden set (which is not a sample of the pool).
    context = rows[0]["Contextual Information"]
    assert "prevalence plan" in context and "inclusion probability" in context
    assert "NOT an unbiased sample" not in context


def test_demo_leaves_a_prevalence_estimate_for_the_evaluation_page(loop: Loop) -> None:
    with loop.db.sessions() as s:
        est = estimate_prevalence(s, DEMO_PROJECT, DEMO_PREVALENCE_POLICY)
    assert est["n_sampled"] == DEMO_PREVALENCE_N and 0 < est["n_reviewed"] <= est["n_sampled"]
    lo, hi = est["ci"]
    assert 0 < lo < est["estimate"] < hi < 1
    assert est["recall"]["estimate"] is not None and est["recall"]["ci"] is not None
    plan_file = loop.home / f"demo-prevalence-{DEMO_PREVALENCE_POLICY}.csv"
    assert _lines(plan_file) == DEMO_PREVALENCE_N + 1  # the header
    # The reviews' own enforcement decisions did not crowd out the demo's decided appeal.
    with loop.db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(DecisionAppeal)) == 1


def test_status_counts_what_the_database_holds(loop: Loop) -> None:
    status = CLI().json("status", "--project", DEMO_PROJECT)
    with loop.db.sessions() as s:
        project = s.scalar(select(Project.id).where(Project.name == DEMO_PROJECT))

        def count(*where: Any, what: Any = None) -> int:
            return s.scalar(select(what if what is not None else func.count()).where(*where)) or 0

        assert status["items"] == count(Item.project_id == project)
        assert status["labels"] == count(Label.project_id == project)
        assert status["labelled_items"] == count(
            Label.project_id == project, what=func.count(distinct(Label.item_id))
        )
        assert status["reviewers"] == count(
            Label.project_id == project, what=func.count(distinct(Label.reviewer_id))
        )
        assert status["model_versions"] == count(ModelVersion.project_id == project)
        fused = s.scalar(
            select(EmbeddingSpace.id).where(
                EmbeddingSpace.project_id == project, EmbeddingSpace.name == "fused"
            )
        )
        assert status["embedded"] == count(
            Embedding.space_id == fused, Embedding.status == EmbeddingStatus.ok
        )
    assert status["queued"] == len(_pending(loop.db))
    human = CLI()("status", "-p", DEMO_PROJECT).stdout.splitlines()
    assert human[0] == f"project {DEMO_PROJECT}"
    assert f"  {'items':<18} {status['items']}" in human


def test_embed_adds_only_new_items_to_the_vectors(loop: Loop) -> None:
    cli = CLI()
    manifest = loop.home.parent / "fresh.jsonl"

    def add(first: int, n: int) -> None:
        rows = [{"external_id": f"f{i}", "text": f"short comment {i} on a song"} for i in range(n)]
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows[first:]))
        assert cli.json("ingest", str(manifest), "-p", "fresh")["items_added"] == n - first

    add(0, 6)
    first = cli.json("embed", "-p", "fresh")
    assert (first["project"], first["failed"], first["failures"]) == ("fresh", 0, [])
    assert first["spaces"]["text"]["embedded"] == first["spaces"]["fused"]["embedded"] == 6
    assert first["spaces"]["fused"]["indexed"] == 6
    add(6, 8)
    second = cli.json("embed", "-p", "fresh", "--batch-size", "1")
    assert second["spaces"]["text"]["embedded"] == second["spaces"]["fused"]["embedded"] == 2
    third = cli.json("embed", "-p", "fresh")
    assert third["embedded"] == 0 and third["spaces"]["text"]["up_to_date"] == 8
    with loop.db.sessions() as s:
        rows = s.execute(
            select(EmbeddingSpace.name, func.count())
            .join(Embedding, Embedding.space_id == EmbeddingSpace.id)
            .join(Project, Project.id == EmbeddingSpace.project_id)
            .where(Project.name == "fresh", Embedding.status == EmbeddingStatus.ok)
            .group_by(EmbeddingSpace.name)
        ).all()
    assert dict(rows) == {"text": 8, "fused": 8}
    assert cli.json("status", "-p", "fresh")["embedded"] == 8


def test_similar_finds_neighbours_of_an_item_and_of_a_text(loop: Loop) -> None:
    cli = CLI()
    known = {
        json.loads(ln)["external_id"]
        for f in (FIXTURES / "manifest.jsonl", FIXTURES / "evaluation" / "items.jsonl")
        for ln in f.open()
    }
    by_item = cli.json("similar", "-p", DEMO_PROJECT, "--item", "comment-0001", "-k", "3")
    by_text = cli.json("similar", "-p", DEMO_PROJECT, "--text", "free premium giveaway", "-k", "5")
    for result, k in ((by_item, 3), (by_text, 5)):
        found = result["neighbours"]
        assert len(found) == k and {n["external_id"] for n in found} <= known
        scores = [n["score"] for n in found]
        assert scores == sorted(scores, reverse=True)
    assert "comment-0001" not in {n["external_id"] for n in by_item["neighbours"]}
    missing = cli.json("similar", "-p", DEMO_PROJECT, "--item", "nope", expect=1)
    assert "nope" in missing["error"]


def test_select_queues_unlabelled_items_with_a_reason_each(loop: Loop) -> None:
    cli = CLI()
    pending = _pending(loop.db)
    with loop.db.sessions() as s:
        labelled = set(s.scalars(select(Label.item_id)))
    result = cli.json(
        "select", "-p", DEMO_PROJECT, "--strategy", "random", "--batch", "3", "--seed", "1"
    )
    assert result["queued"] == len(result["entries"]) == 3
    assert all(e["strategy"] == "random" and e["reason"] for e in result["entries"])
    picked = {e["item_id"] for e in result["entries"]}
    assert not picked & (set(pending) | labelled)
    assert sorted(_pending(loop.db)) == sorted(pending + list(picked))
    bad = cli.json("select", "-p", DEMO_PROJECT, "--strategy", "bogus", expect=1)
    assert "bogus" in bad["error"] and sorted(_pending(loop.db)) == sorted(pending + list(picked))


def _versions(db: Database) -> list[int]:
    with db.sessions() as s:
        return list(s.scalars(select(ModelVersion.version).order_by(ModelVersion.version)))


def test_retrain_trains_a_new_model_version_now(loop: Loop) -> None:
    before = _versions(loop.db)
    result = CLI().json("retrain", "-p", DEMO_PROJECT)
    assert result["status"] == "succeeded" and result["error"] is None
    model = result["model"]
    assert model["version"] == before[-1] + 1 and _versions(loop.db) == [*before, model["version"]]
    assert model["trained_on"] > 0 and "macro_f1" in model["metrics"]
    assert Path(model["scores_path"]).is_file()


def test_worker_once_runs_a_queued_round_and_stops(loop: Loop, keep_sigterm: None) -> None:
    cli = CLI()
    before = _versions(loop.db)
    queued = cli.json("retrain", "-p", DEMO_PROJECT, "--queue")
    assert queued["status"] == "queued" and _versions(loop.db) == before
    worked = cli("worker", "--once", "--poll-seconds", "0.1")
    assert worked.exit_code == 0, worked.stderr
    assert "worker stopped after 1 rounds" in worked.stderr and worked.stdout == ""
    rounds = {r["round"]: r for r in cli.json("models", "-p", DEMO_PROJECT)["rounds"]}
    assert rounds[queued["round"]]["status"] == "succeeded"
    assert len(_versions(loop.db)) == len(before) + 1
    idle = cli("worker", "--once", "--poll-seconds", "0.1")
    assert idle.exit_code == 0 and "worker stopped after 0 rounds" in idle.stderr


def test_models_lists_versions_newest_first_with_their_rounds(loop: Loop) -> None:
    result = CLI().json("models", "-p", DEMO_PROJECT)
    versions = [m["version"] for m in result["models"]]
    assert versions == sorted(_versions(loop.db), reverse=True)
    assert all(m["metrics"] and m["classes"] for m in result["models"])
    assert {r["model_version_id"] for r in result["rounds"] if r["status"] == "succeeded"}
    human = CLI()("models", "-p", DEMO_PROJECT).stdout.splitlines()
    assert [ln.split()[0] for ln in human] == [f"v{v}" for v in versions]
