"""Where the DSA report's accuracy figures come from: a sampled evaluation set (weighted by its
strata's design), a prevalence plan (weighted by 1 / inclusion probability), the random share
(as the golden report), or, failing all, a label-file set said not to be a sample of the pool;
and catalogue-sweep blocks without a policy counted as solely automated measures."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_score, recall_score
from sqlalchemy import select, update
from statsmodels.stats.proportion import proportion_confint
from test_dsa_report import PERIOD, D, _rows, _value, _write, build_fixture

from workbench.db.database import Database
from workbench.db.models import (
    AuditEvent,
    EvaluationMember,
    EvaluationSet,
    EvaluationSetKind,
    EvaluationSetStatus,
    Item,
    ModelStatus,
    ModelVersion,
    PrevalencePlan,
    PrevalenceSample,
    Project,
    QueueEntry,
    Scan,
    ScanDecision,
)
from workbench.services.report import transparency


@pytest.fixture
def fixture_db(db: Database, tmp_path: Path) -> Database:
    scores = tmp_path / "model"
    scores.mkdir()
    with db.sessions.begin() as s:
        build_fixture(s, scores)
    return db


SCOPE = "Total number"
ACC = "Accuracy of the automated means - "
# The fixture's classifier calls on sampled item n (test_dsa_report.build_fixture).
CALLS = [(n % 4 == 0 and n != 8) or n % 10 == 3 for n in range(40)]


def _sampled(s: object) -> list[Item]:
    return list(s.scalars(select(Item).where(Item.external_id.like("s%")).order_by(Item.id)))  # type: ignore[attr-defined]


def _context(rows: list[dict[str, str]], indicator: str) -> str:
    (hit,) = [r["Contextual Information"] for r in rows
              if r["Indicator"].startswith(indicator) and r["Scope"] == SCOPE]  # fmt: skip
    return hit


def _check_weighted(rows: list[dict[str, str]], truth: list[bool], pred: list[bool],
                    w: np.ndarray) -> None:  # fmt: skip
    assert float(_value(rows, ACC + "Accuracy", SCOPE)) == pytest.approx(
        accuracy_score(truth, pred, sample_weight=w), abs=5e-5)  # fmt: skip
    assert float(_value(rows, ACC + "Precision", SCOPE)) == pytest.approx(
        precision_score(truth, pred, sample_weight=w), abs=5e-5)  # fmt: skip
    assert float(_value(rows, ACC + "Recall", SCOPE)) == pytest.approx(
        recall_score(truth, pred, sample_weight=w), abs=5e-5)  # fmt: skip
    # The accuracy's interval: Wilson on Kish's effective sample size.
    p = accuracy_score(truth, pred, sample_weight=w)
    n_eff = w.sum() ** 2 / (w**2).sum()
    low, high = proportion_confint(p * n_eff, n_eff, alpha=0.05, method="wilson")
    context = _context(rows, ACC + "Accuracy")
    assert f"effective sample size {n_eff:.1f} [{low:.4f}, {high:.4f}]" in context
    assert f"sample size {len(truth)}." in context


def test_a_sampled_evaluation_set_is_preferred_and_weighted_by_its_strata(
    fixture_db: Database, tmp_path: Path
) -> None:
    with fixture_db.sessions.begin() as s:
        p = s.scalar(select(Project).where(Project.name == "dsa"))
        es = EvaluationSet(
            project_id=p.id, name="pool", version=1, kind=EvaluationSetKind.sample,
            status=EvaluationSetStatus.frozen, created_by="lena",
            source={"n": 40, "overlap": 1, "seed": 0, "stratum_sizes": {"en": 100, "de": 10}},
            created_at=D, frozen_at=D + timedelta(days=10),
        )  # fmt: skip
        s.add(es)
        s.flush()
        for n, item in enumerate(_sampled(s)):
            s.add(EvaluationMember(set_id=es.id, item_id=item.id, stratum=item.language,
                                   reference="spam" if n % 4 == 0 else "none"))  # fmt: skip
    _write(fixture_db, tmp_path)
    rows = _rows(tmp_path / "automated_means.csv")
    truth = [n % 4 == 0 for n in range(40)]
    w = np.array([100 / 25 if n < 25 else 10 / 15 for n in range(40)])
    _check_weighted(rows, truth, CALLS, w)
    assert "evaluation set 'pool' v1, a stratified random sample" in _context(rows, ACC + "Recall")


def test_a_prevalence_plan_is_weighted_by_inclusion_probabilities(
    fixture_db: Database, tmp_path: Path
) -> None:
    with fixture_db.sessions.begin() as s:
        p = s.scalar(select(Project).where(Project.name == "dsa"))
        plan = PrevalencePlan(
            project_id=p.id, policy="spam", model_version=1, threshold=0.5,
            threshold_source="default", n_requested=40, seed=0, population=400, strata=[],
            created_by="lena", created_at=D,
        )  # fmt: skip
        s.add(plan)
        s.flush()
        for n, item in enumerate(_sampled(s)):
            s.add(PrevalenceSample(plan_id=plan.id, item_id=item.id, stratum=n % 2, score=0.5,
                                   inclusion_probability=0.5 if n % 2 == 0 else 0.1))  # fmt: skip
    _write(fixture_db, tmp_path)
    rows = _rows(tmp_path / "automated_means.csv")
    # s0 is a tie between alice and carol: left out.
    ns = range(1, 40)
    w = np.array([2.0 if n % 2 == 0 else 10.0 for n in ns])
    _check_weighted(rows, [n % 4 == 0 for n in ns], [CALLS[n] for n in ns], w)
    assert f"prevalence plan {plan.id} (policy spam)" in _context(rows, ACC + "Accuracy")


def test_without_a_sample_a_label_file_set_is_used_and_said_not_to_be_one(
    fixture_db: Database, tmp_path: Path
) -> None:
    with fixture_db.sessions.begin() as s:
        p = s.scalar(select(Project).where(Project.name == "dsa"))
        s.execute(update(QueueEntry).where(QueueEntry.strategy == "random").values(
            strategy="margin"))  # fmt: skip
        es = EvaluationSet(
            project_id=p.id, name="golden", version=1, kind=EvaluationSetKind.labels_file,
            status=EvaluationSetStatus.frozen, created_by="lena", source={"file": "g.jsonl"},
            created_at=D, frozen_at=D,
        )  # fmt: skip
        s.add(es)
        s.flush()
        for n, item in enumerate(_sampled(s)[:10]):
            s.add(EvaluationMember(set_id=es.id, item_id=item.id, stratum=item.language,
                                   reference="spam" if n % 2 == 0 else "none"))  # fmt: skip
    _write(fixture_db, tmp_path)
    rows = _rows(tmp_path / "automated_means.csv")
    truth, pred = [n % 2 == 0 for n in range(10)], CALLS[:10]
    assert float(_value(rows, ACC + "Accuracy", SCOPE)) == pytest.approx(
        accuracy_score(truth, pred), abs=5e-5)  # fmt: skip
    assert "NOT an unbiased sample of the pool" in _context(rows, ACC + "Accuracy")


def test_sweep_blocks_without_a_policy_count_as_solely_automated_measures(
    fixture_db: Database, tmp_path: Path
) -> None:
    with fixture_db.sessions.begin() as s:
        p = s.scalar(select(Project).where(Project.name == "dsa"))
        item = s.scalar(select(Item).where(Item.external_id.like("m%")).limit(1))
        for source, at in (("sweep", D + timedelta(days=3)), ("api", D + timedelta(days=3)),
                           ("sweep", D - timedelta(days=3))):  # fmt: skip
            s.add(Scan(project_id=p.id, source=source, item_id=item.id, created_at=at,
                       decision=ScanDecision.block, reasons=[{"bank": "known"}],
                       automated_detection=True, automated_decision=True))  # fmt: skip
    _write(fixture_db, tmp_path)
    rows = _rows(tmp_path / "automated_means.csv")
    assert {r["Reporting period (YYYY-MM-DD/YYYY-MM-DD)"] for r in rows} == {PERIOD}
    # One fully automated decision (the fixture's scan) plus the one sweep block in the period.
    assert _value(rows, "Number of measures solely taken by automated means ", SCOPE) == "2"
    (context,) = [r["Contextual Information"] for r in rows
                  if r["Indicator"].startswith("Number of measures solely")]  # fmt: skip
    assert "fully automated (1), plus catalogue-sweep blocks on a hash-bank match (1)" in context


def test_the_means_evaluated_is_the_champion_at_the_periods_end(
    fixture_db: Database, tmp_path: Path
) -> None:
    # v2 trained in the period but promoted only after it: the report evaluates v1.
    with fixture_db.sessions.begin() as s:
        p = s.scalar(select(Project).where(Project.name == "dsa"))
        v1 = s.scalar(select(ModelVersion).where(ModelVersion.project_id == p.id))
        v1.status = ModelStatus.retired
        s.add(ModelVersion(
            project_id=p.id, version=2, head="mlp", params={}, classes=v1.classes, metrics={},
            calibrated=False, calibration_note="", trained_on=10, artifact_path="x",
            scores_path=v1.scores_path, status=ModelStatus.champion,
            created_at=D + timedelta(days=5),
        ))  # fmt: skip
        events = [(1, "model.trained", D, True), (2, "model.trained", D + timedelta(days=5), False),
                  (2, "model.promoted", D + timedelta(days=40), True)]  # fmt: skip
        for version, action, at, promoted in events:
            s.add(AuditEvent(at=at, actor="system", action=action, project_id=p.id,
                             entity_type="model_version", entity_id=str(version),
                             details={"promoted": promoted}))  # fmt: skip
    _write(fixture_db, tmp_path)
    contexts = [r["Contextual Information"] for r in _rows(tmp_path / "automated_means.csv")]
    assert any("classifier v1" in c for c in contexts)
    assert not any("classifier v2" in c for c in contexts)
    # A period that ends after the promotion evaluates v2.
    with fixture_db.sessions() as s:
        p = s.scalar(select(Project).where(Project.name == "dsa"))
        assert transparency.champion_at(s, p, D + timedelta(days=39)).version == 1
        assert transparency.champion_at(s, p, D + timedelta(days=41)).version == 2
