"""The scan decision and champion scoring without HTTP: block beats review, per-policy
thresholds, the deadline answer, and a champion whose vectors cannot be rebuilt."""

from __future__ import annotations

from builders import make_project
from scan_builders import WordEncoder, lookup, make_champion

from workbench.db.database import Database
from workbench.db.models import ScanDecision
from workbench.schemas import ProjectSettings, ScanThreshold
from workbench.services.projects import get_project
from workbench.services.scan.banks.match import BankMatch
from workbench.services.scan.decide import ModelScores, decide
from workbench.services.scan.score import ChampionScorer, LoadedChampion


def match(bank: str, action: str) -> BankMatch:
    return BankMatch(bank, action, "pdq", 3, None)


def _scores(**scores: float) -> ModelScores:
    return ModelScores(model_version=2, model_version_id=9, scores=scores)


def test_a_block_bank_beats_a_review_bank_and_needs_no_model() -> None:
    out = decide(
        [match("A", "review"), match("B", "block")], None, ProjectSettings(), model_status="skipped"
    )
    assert out.decision == ScanDecision.block and [r["bank"] for r in out.reasons] == ["A", "B"]
    assert out.automated_detection


def test_each_policy_has_its_own_thresholds() -> None:
    settings = ProjectSettings(
        scan_thresholds={"hate": ScanThreshold(review=0.3, block=0.9)},
        scan_default_thresholds=ScanThreshold(review=0.8, block=None),
    )
    held = decide([], _scores(hate=0.4, spam=0.7, none=0.1), settings, model_status="scored")
    assert held.decision == ScanDecision.review
    assert [(r["policy"], r["threshold"]) for r in held.reasons] == [("hate", 0.3)]
    blocked = decide([], _scores(hate=0.95, spam=0.99), settings, model_status="scored")
    assert blocked.decision == ScanDecision.block  # spam only ever reviews: no block threshold
    assert {(r["policy"], r["action"]) for r in blocked.reasons} == {
        ("hate", "block"),
        ("spam", "review"),
    }
    assert (
        decide([], _scores(none=0.99, hate=0.01), settings, model_status="scored").decision
        == "allow"
    )


def test_a_missed_deadline_answers_the_project_setting() -> None:
    closed = ProjectSettings(scan_deadline_decision="block")
    out = decide([], None, closed, model_status="deadline", degraded=True)
    assert out.decision == ScanDecision.block and out.degraded and not out.automated_detection
    # What the banks found still decides.
    out = decide([match("A", "review")], None, closed, model_status="deadline", degraded=True)
    assert out.decision == ScanDecision.review


def test_a_champion_trained_on_another_encoder_version_is_not_scorable(db: Database) -> None:
    with db.sessions.begin() as s:
        make_project(s, "p")
    make_champion(db, "p", WordEncoder(version="1"))
    with db.sessions() as s:
        project = get_project(s, "p")
        stale = ChampionScorer(db.settings, lookup(WordEncoder(version="2"))).current(s, project)
        ok = ChampionScorer(db.settings, lookup(WordEncoder(version="1"))).current(s, project)
    assert isinstance(stale, str) and stale.startswith("not_scorable") and "version 2" in stale
    assert isinstance(ok, LoadedChampion) and ok.layout == {"text": 8}
    scores = ChampionScorer.score(ok, "hateful words", [])
    assert scores.scores["hate"] > 0.5 > ChampionScorer.score(ok, "kind words", []).scores["hate"]
