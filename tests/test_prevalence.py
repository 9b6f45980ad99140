"""Prevalence and recall from a stratified sample: the estimator checked by exact enumeration
of every possible sample, the interval's coverage for a rare class, Neyman allocation, and the
plan -> label -> estimate path end to end on SQLite and Postgres, with its bad input."""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from builders import make_project
from quality_builders import Labels, add_fused_vectors, separable_vectors
from sqlalchemy import func, select

from workbench.db.database import Database
from workbench.db.models import AuditEvent, PrevalencePlan, PrevalenceSample, QueueEntry
from workbench.services.audit import Actor
from workbench.services.evaluate.sampling import (
    bernoulli_prior_sd,
    draw_stratified,
    neyman_allocation,
    quantile_strata,
    stratified_interval,
    stratified_proportion,
    stratified_recall,
)
from workbench.services.train.rounds import run_round_now

# --- the estimator ------------------------------------------------------------------------

# A population small enough to enumerate every stratified sample: 3 strata, 0/1 outcomes.
STRATA_TRUTH = [np.array([0, 0, 0, 0, 1]), np.array([0, 1, 1, 0]), np.array([1, 1, 0, 1, 1, 1])]
ALLOC = [2, 2, 3]


def _all_samples() -> list[tuple[float, float]]:
    """(estimate, variance estimate) for each of the C(5,2) C(4,2) C(6,3) equally likely samples."""
    N = np.array([len(t) for t in STRATA_TRUTH])
    out = []
    choices = [
        itertools.combinations(range(len(t)), a) for t, a in zip(STRATA_TRUTH, ALLOC, strict=True)
    ]
    for picks in itertools.product(*choices):
        y = np.array([int(t[list(p)].sum()) for t, p in zip(STRATA_TRUTH, picks, strict=True)])
        est = stratified_proportion(N, np.array(ALLOC), y)
        out.append((est.estimate, est.variance))
    return out


def test_stratified_estimate_is_unbiased_over_every_possible_sample() -> None:
    samples = _all_samples()
    assert len(samples) == math.comb(5, 2) * math.comb(4, 2) * math.comb(6, 3)
    truth = sum(int(t.sum()) for t in STRATA_TRUTH) / sum(len(t) for t in STRATA_TRUTH)
    assert np.mean([e for e, _ in samples]) == pytest.approx(truth, abs=1e-12)


def test_variance_estimate_with_the_fpc_is_unbiased_for_the_true_variance() -> None:
    # Cochran (1977) theorem 5.4: E[v(p_st)] = V(p_st) under stratified SRS without
    # replacement. Without the finite population correction it would overshoot.
    samples = _all_samples()
    estimates = np.array([e for e, _ in samples])
    true_variance = float(np.mean((estimates - estimates.mean()) ** 2))
    assert np.mean([v for _, v in samples]) == pytest.approx(true_variance, rel=1e-9)
    assert true_variance > 0


def test_stratified_estimate_by_hand() -> None:
    # W = (0.5, 0.3, 0.2); p_h = (0.1, 0.4, 0.8); n_h = (10, 10, 5); N_h = (100, 60, 40).
    est = stratified_proportion(np.array([100, 60, 40]), np.array([10, 10, 5]), np.array([1, 4, 4]))
    assert est.estimate == pytest.approx(0.5 * 0.1 + 0.3 * 0.4 + 0.2 * 0.8)
    by_hand = (
        0.25 * 0.9 * 0.1 * 0.9 / 9 + 0.09 * (1 - 10 / 60) * 0.4 * 0.6 / 9
        + 0.04 * (1 - 5 / 40) * 0.8 * 0.2 / 4
    )  # fmt: skip
    assert est.variance == pytest.approx(by_hand)


def test_a_stratum_with_fewer_than_two_reviews_is_refused() -> None:
    with pytest.raises(ValueError, match="at least two"):
        stratified_proportion(np.array([10, 10]), np.array([1, 5]), np.array([0, 1]))
    with pytest.raises(ValueError, match="positives <= reviewed"):
        stratified_proportion(np.array([10, 10]), np.array([3, 5]), np.array([4, 1]))


def _rare_population(n: int = 20_000, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Scores and 0/1 truth for a rare class (about 2 %) whose score is informative."""
    rng = np.random.default_rng(seed)
    scores = rng.beta(0.4, 12.0, n)
    truth = rng.random(n) < scores
    return scores, truth


def test_interval_keeps_its_coverage_for_a_rare_class() -> None:
    scores, truth = _rare_population()
    strata, _ = quantile_strata(scores, 5)
    N = np.bincount(strata)
    means = np.bincount(strata, weights=scores) / N
    alloc = neyman_allocation(N, bernoulli_prior_sd(means), 300)
    rng = np.random.default_rng(7)
    true_p = truth.mean()
    hits, reps = 0, 600
    for _ in range(reps):
        idx = draw_stratified(strata, alloc, rng)
        y = np.bincount(strata[idx], weights=truth[idx].astype(float), minlength=len(N))
        lo, hi = stratified_interval(stratified_proportion(N, alloc, y), 0.95)
        hits += lo <= true_p <= hi
    assert 0.92 <= hits / reps <= 0.985


def test_recall_ratio_estimate_by_hand_and_its_coverage() -> None:
    # One stratum, N large: R = flagged positives / positives of the sample.
    N = np.array([10**9])
    h = np.zeros(6, dtype=np.int64)
    y = np.array([1, 1, 1, 1, 0, 0])
    a = np.array([1, 1, 1, 0, 1, 0])
    rec = stratified_recall(N, h, y, a)
    assert rec.estimate == pytest.approx(0.75)
    d = y * (a - 0.75)
    assert rec.variance == pytest.approx(np.var(d, ddof=1) / 6 / (4 / 6) ** 2, rel=1e-6)
    lo, hi = rec.ci  # type: ignore[misc]
    assert 0 < lo < 0.75 < hi < 1

    scores, truth = _rare_population(seed=3)
    flagged = scores >= 0.1
    true_recall = (truth & flagged).sum() / truth.sum()
    strata, _ = quantile_strata(scores, 5)
    Nh = np.bincount(strata)
    alloc = neyman_allocation(Nh, bernoulli_prior_sd(np.bincount(strata, weights=scores) / Nh), 600)
    rng = np.random.default_rng(11)
    hits, reps = 0, 400
    for _ in range(reps):
        idx = draw_stratified(strata, alloc, rng)
        r = stratified_recall(Nh, strata[idx], truth[idx], flagged[idx])
        assert r.ci is not None
        hits += r.ci[0] <= true_recall <= r.ci[1]
    assert 0.9 <= hits / reps <= 0.99


def test_neyman_allocation_follows_n_h_s_h_within_bounds() -> None:
    sizes, sds = np.array([1000, 1000, 100]), np.array([0.1, 0.4, 0.5])
    alloc = neyman_allocation(sizes, sds, 200)
    assert alloc.sum() == 200
    weights = sizes * sds
    np.testing.assert_allclose(alloc, 200 * weights / weights.sum(), atol=1)
    # Capped at N_h, raised to the minimum of 2, the rest re-shared.
    alloc = neyman_allocation(np.array([3, 1000, 5]), np.array([0.5, 0.5, 0.0001]), 50)
    assert alloc.sum() == 50 and alloc[0] <= 3 and alloc[2] >= 2
    assert list(neyman_allocation(np.array([3, 4]), np.array([0.5, 0.5]), 7)) == [3, 4]
    with pytest.raises(ValueError, match="larger than the population"):
        neyman_allocation(np.array([3, 4]), np.array([0.5, 0.5]), 8)
    with pytest.raises(ValueError, match="fewer strata"):
        neyman_allocation(np.array([30, 40, 50]), np.array([0.5, 0.5, 0.5]), 5)


def test_quantile_strata_merge_tied_edges() -> None:
    strata, bounds = quantile_strata(np.array([0.0, 0.0, 0.0, 0.0, 0.5, 0.9]), 4)
    assert list(strata) == [0, 0, 0, 0, 1, 1] and len(bounds) == 3
    strata, _ = quantile_strata(np.arange(100) / 100, 4)
    assert list(np.bincount(strata)) == [25, 25, 25, 25]


# --- plan -> label -> estimate ----------------------------------------------------------

CLASSES = ["hate", "spam", "none"]


def _project_with_champion(db: Database) -> dict[str, str]:
    """90 items in three separable clusters, a few labelled, a trained champion; returns the
    true class of every item by external id."""
    vectors, truth = separable_vectors(CLASSES, 30)
    with db.sessions.begin() as s:
        p = make_project(s)
        lab = Labels(s, p)
        items = [lab.item(f"x{n}") for n in range(len(truth))]
        add_fused_vectors(s, db.settings, p, items, vectors)
        seen: dict[str, int] = {}
        for n, cls in enumerate(truth):
            if seen.get(cls, 0) < 6:
                seen[cls] = seen.get(cls, 0) + 1
                lab.label(f"x{n}", "alice", cls)
    run = run_round_now(db, "p", Actor.system(), refill_queue=False, worker="test")
    assert run.status.value == "succeeded"
    return {f"x{n}": cls for n, cls in enumerate(truth)}


def test_plan_label_estimate_end_to_end(db: Database, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    truth = _project_with_champion(db)
    out = tmp_path / "plan.csv"
    plan = cli.json("prevalence", "plan", "-p", "p", "--policy", "hate", "--n", "30",
                    "--out", out, "--strata", "3", "--seed", "4")  # fmt: skip
    assert plan["n"] == 30 and plan["population"] == 90 and len(plan["strata"]) == 3
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30 and set(rows[0]) == {"external_id", "stratum", "inclusion_probability"}
    by_stratum = {st["stratum"]: st for st in plan["strata"]}
    for r in rows:
        st = by_stratum[int(r["stratum"])]
        assert float(r["inclusion_probability"]) == pytest.approx(
            st["allocated"] / st["population"]
        )
    with db.sessions() as s:
        entries = s.scalars(select(QueueEntry).where(QueueEntry.strategy == "prevalence")).all()
        # Items labelled before the plan count with their labels and are not queued again.
        assert len(entries) == plan["queued"] == 30 - plan["already_labelled"]
        assert all("prevalence measurement" in (e.reason or "") for e in entries)
        assert s.scalar(select(func.count()).select_from(PrevalenceSample)) == 30
        assert s.scalar(select(AuditEvent).where(AuditEvent.action == "prevalence.planned"))

    # Nothing reviewed yet (apart from the items labelled before): no estimate, and it says why.
    early = cli.json("prevalence", "estimate", "-p", "p", "--policy", "hate")
    assert early["estimate"] is None and "not enough reviewed" in early["note"]

    with db.sessions.begin() as s:
        from workbench.db.models import Item, Project

        project = s.scalars(select(Project)).one()
        lab = Labels(s, project)
        lab.n = 1000  # idempotency keys after those of the first labels
        labelled = set(
            s.scalars(select(QueueEntry.item_id).where(QueueEntry.strategy == "prevalence"))
        )
        for item in s.scalars(select(Item).where(Item.id.in_(labelled))):
            lab.items[item.external_id] = item
            lab.label(item.external_id, "bob", truth[item.external_id])
    est = cli.json("prevalence", "estimate", "-p", "p", "--policy", "hate")
    assert est["n_reviewed"] == 30 and est["method"].startswith("stratified estimator")
    # By hand from the CSV and the truth: sum_h W_h p_h.
    expected = 0.0
    for h, st in by_stratum.items():
        ids = [r["external_id"] for r in rows if int(r["stratum"]) == h]
        p_h = sum(truth[i] == "hate" for i in ids) / len(ids)
        expected += st["population"] / 90 * p_h
    assert est["estimate"] == pytest.approx(expected, abs=1e-6)
    lo, hi = est["ci"]
    assert lo <= est["estimate"] <= hi and lo <= 1 / 3 <= hi
    assert [st["reviewed"] for st in est["strata"]] == [st["allocated"] for st in plan["strata"]]
    # Recall by hand: estimated flagged positives / estimated positives, stratum by stratum.
    with db.sessions() as s:
        from workbench.db.models import Item

        scored = s.execute(
            select(Item.external_id, PrevalenceSample.stratum, PrevalenceSample.score).join(
                Item, Item.id == PrevalenceSample.item_id
            )
        ).all()
    rec = est["recall"]
    flagged_pos = positives = 0.0
    for h, st in by_stratum.items():
        members = [(e, sc) for e, sh, sc in scored if sh == h]
        w = st["population"] / len(members)
        positives += w * sum(truth[e] == "hate" for e, _ in members)
        flagged_pos += w * sum(truth[e] == "hate" and sc >= rec["threshold"] for e, sc in members)
    assert rec["estimate"] == pytest.approx(flagged_pos / positives, abs=1e-6)
    assert rec["ci"][0] <= rec["estimate"] <= rec["ci"][1]
    assert rec["threshold_source"] and rec["positives_reviewed"] > 0
    human = cli("prevalence", "estimate", "-p", "p", "--policy", "hate")
    assert human.exit_code == 0 and "hate: prevalence" in human.stdout and "recall" in human.stdout


def test_bad_input_exits_1_naming_it_and_writes_nothing(db: Database, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "plan.csv"
    with db.sessions.begin() as s:
        make_project(s)
    r = cli.json("prevalence", "plan", "-p", "p", "--policy", "hate", "--n", "5", "--out", out,
                 expect=1)  # fmt: skip
    assert "no champion model" in r["error"]
    _project_with_champion_on_existing(db)
    for policy, n, needle in (
        ("nope", 5, "unknown policy 'nope'"),
        ("hate", 91, "larger than the pool"),
        ("violence", 5, "has no class 'violence'"),
    ):
        r = cli.json("prevalence", "plan", "-p", "p", "--policy", policy, "--n", str(n),
                     "--out", out, expect=1)  # fmt: skip
        assert needle in r["error"], r
    r = cli.json("prevalence", "plan", "-p", "p", "--policy", "hate", "--n", "30", "--strata",
                 "20", "--out", out, expect=1)  # fmt: skip
    assert "fewer strata" in r["error"]
    assert not out.exists() and not list(tmp_path.glob(".plan.csv*"))
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(PrevalencePlan)) == 0
        assert s.scalar(select(func.count()).select_from(QueueEntry)) == 0
    r = cli.json("prevalence", "estimate", "-p", "p", "--policy", "hate", expect=1)
    assert "no prevalence plan" in r["error"]
    r = cli.json("prevalence", "estimate", "-p", "p", "--policy", "hate", "--confidence", "1.5",
                 expect=1)  # fmt: skip
    assert "--confidence" in r["error"]


def _project_with_champion_on_existing(db: Database) -> None:
    vectors, truth = separable_vectors(CLASSES, 30)
    with db.sessions.begin() as s:
        from workbench.db.models import Project

        p = s.scalars(select(Project)).one()
        lab = Labels(s, p)
        items = [lab.item(f"x{n}") for n in range(len(truth))]
        add_fused_vectors(s, db.settings, p, items, vectors)
        for n, cls in enumerate(truth):
            if n % 5 == 0:
                lab.label(f"x{n}", "alice", cls)
    run = run_round_now(db, "p", Actor.system(), refill_queue=False, worker="test")
    assert run.status.value == "succeeded"


def test_a_stratum_without_positives_still_adds_interval_variance() -> None:
    # The unbiased estimate gives the empty stratum zero variance; the interval's does not.
    est = stratified_proportion(np.array([9000, 1000]), np.array([10, 50]), np.array([0, 20]))
    unbiased_part = 0.1**2 * (1 - 50 / 1000) * 0.4 * 0.6 / 49
    assert est.variance == pytest.approx(unbiased_part)
    assert est.interval_variance > est.variance
    assert est.effective_n < est.estimate * (1 - est.estimate) / est.variance


def test_a_gold_answer_is_the_items_verdict(sqlite_db: Database, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    truth = _project_with_champion(sqlite_db)
    cli.json("prevalence", "plan", "-p", "p", "--policy", "hate", "--n", "90", "--out",
             tmp_path / "all.csv", "--strata", "3")  # fmt: skip
    with sqlite_db.sessions.begin() as s:
        from workbench.db.models import Item, Project

        lab = Labels(s, s.scalars(select(Project)).one())
        lab.n = 1000
        lab.items = {i.external_id: i for i in s.scalars(select(Item))}
        for ext, cls in truth.items():
            if ext not in ("x0", "x20"):  # both hate; x20 stays without a verdict
                lab.label(ext, "bob", cls)
    # A gold answer saying x0 (labelled hate by alice) is not violating outranks her.
    r = cli.json("gold", "mark", "-p", "p", "--item", "x0", "--decision", "not_violating")
    assert r
    est = cli.json("prevalence", "estimate", "-p", "p", "--policy", "hate")
    assert est["n_reviewed"] == 89  # every item but x20
    # All 90 items drawn (a census): the estimate is the share of hate among those with a
    # verdict, stratum by stratum; x0 counts as not hate.
    positives = sum(st["positives"] for st in est["strata"])
    assert positives == sum(1 for e, c in truth.items() if c == "hate" and e not in ("x0", "x20"))
