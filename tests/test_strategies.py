"""Selection strategies on small synthetic pools: each picks what its method promises."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.db.database import Database
from workbench.errors import WorkbenchError
from workbench.services.select.strategies import SelectionContext, make_strategy
from workbench.services.select.strategies.mix import shares_to_counts
from workbench.services.select.strategies.uncertainty import (
    entropy_scores,
    least_confidence_scores,
    margin_scores,
    positive_margin_scores,
)
from workbench.services.train.heads import LogisticHead

ALL = [
    "random",
    "least_confidence",
    "margin",
    "entropy",
    "ranked_batch",
    "cluster_margin",
    "coreset",
    "seals",
    "typiclust",
    "kmeans",
    "top_positive",
    "positive_margin",
    "mix:cluster_margin=0.7,seals=0.2,random=0.1",
]


def pool(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Eight tight clusters in 8-d; cluster 0 is the rare 'hate' class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(8, 8))
    cluster = rng.integers(0, 8, n)
    x = (centres[cluster] + rng.normal(scale=0.5, size=(n, 8))).astype(np.float32)
    labels = np.where(cluster == 0, "hate", np.where(cluster < 4, "offensive", "none"))
    return x, labels


def context(x: np.ndarray, y: np.ndarray, labelled: np.ndarray, **kw: object) -> SelectionContext:
    head = LogisticHead(random_state=0).fit(x[labelled], y[labelled])
    return SelectionContext(
        vectors=x,
        labelled=labelled,
        labels=y[labelled],
        head=head,
        positive="hate",
        rng=np.random.default_rng(0),
        **kw,  # type: ignore[arg-type]
    )


def test_uncertainty_scores_match_modal() -> None:
    from modAL.uncertainty import classifier_entropy, classifier_margin, classifier_uncertainty

    x, y = pool()
    head = LogisticHead(random_state=0).fit(x[:60], y[:60])
    p = head.predict_proba(x)
    np.testing.assert_allclose(least_confidence_scores(p), classifier_uncertainty(head, x))
    np.testing.assert_allclose(margin_scores(p), classifier_margin(head, x))
    np.testing.assert_allclose(entropy_scores(p), classifier_entropy(head, x), atol=1e-6)


def test_margin_picks_the_items_nearest_the_boundary() -> None:
    x = np.linspace(-3, 3, 61, dtype=np.float32)[:, None]
    y = np.where(x[:, 0] > 0, "hate", "none")
    labelled = np.array([0, 5, 10, 50, 55, 60])
    ctx = context(x, y, labelled)
    sel = make_strategy("margin").select(ctx, 4)
    # The four items closest to 0 (the boundary): 0.0, ±0.1 and one of ±0.2.
    assert np.abs(x[sel.indices, 0]).max() <= 0.21
    assert "margin" in sel.reasons[0] and "between" in sel.reasons[0]


def test_ranked_batch_matches_modal_on_a_small_case() -> None:
    from modAL.batch import uncertainty_batch_sampling
    from modAL.models import ActiveLearner

    x, y = pool(200)
    labelled = np.arange(30)
    ctx = context(x, y, labelled)
    sel = make_strategy("ranked_batch").select(ctx, 10)
    learner = ActiveLearner(
        estimator=LogisticHead(random_state=0), X_training=x[labelled], y_training=y[labelled]
    )
    rest = np.arange(30, 200)
    ref = uncertainty_batch_sampling(learner, x[rest], n_instances=10)
    ref = ref[0] if isinstance(ref, tuple) else ref
    assert sel.indices.tolist() == rest[ref].tolist()


def test_cluster_margin_covers_several_clusters() -> None:
    x, y = pool(800)
    labelled = np.arange(80)
    ctx = context(x, y, labelled)
    from workbench.services.select.strategies.diversity import ClusterMarginStrategy

    # With every unlabelled item a candidate, the round robin visits all eight clusters,
    # where plain margin crowds onto the few clusters that straddle a boundary.
    sel = ClusterMarginStrategy(n_clusters=8, oversample=100).select(ctx, 8)
    assign = ctx.cache["kmeans:8:0:800"][1]
    assert len(set(assign[sel.indices].tolist())) == 8
    plain = make_strategy("margin").select(ctx, 8)
    assert len(set(assign[plain.indices].tolist())) < 8
    assert "cluster" in sel.reasons[0] and "of 8" in sel.reasons[0]


def test_coreset_picks_the_points_far_from_the_labelled_ones() -> None:
    rng = np.random.default_rng(0)
    near = rng.normal(scale=0.1, size=(100, 2))
    far = np.array([[10.0, 0.0], [0.0, 10.0], [-10.0, 0.0]])
    x = np.vstack([near, far]).astype(np.float32)
    y = np.array(["none", "hate"] * 50 + ["none"] * 3)
    ctx = context(x, y, np.arange(10))
    sel = make_strategy("coreset").select(ctx, 3)
    assert sorted(sel.indices.tolist()) == [100, 101, 102]


def test_coreset_matches_a_brute_force_k_center_greedy() -> None:
    x, y = pool(300)
    labelled = np.arange(20)
    sel = make_strategy("coreset").select(context(x, y, labelled), 6)
    centres = list(labelled)
    expected = []
    for _ in range(6):
        d = ((x[:, None, :] - x[None, centres, :]) ** 2).sum(-1).min(axis=1)
        d[centres] = -1
        i = int(np.argmax(d))
        expected.append(i)
        centres.append(i)
    assert sel.indices.tolist() == expected


def test_seals_candidates_are_neighbours_of_labelled_positives() -> None:
    x, y = pool(800)
    labelled = np.arange(40)
    assert (y[labelled] == "hate").any()
    ctx = context(x, y, labelled)
    from workbench.services.select.strategies.search import SEALSStrategy

    seals = SEALSStrategy(base="margin", neighbours=20)
    sel = seals.select(ctx, 10)
    positives = labelled[y[labelled] == "hate"]
    d = ((x[sel.indices, None, :] - x[None, positives, :]) ** 2).sum(-1).min(axis=1)
    # Each pick lies within the 20-nearest-neighbour radius of some known positive.
    radius = max(np.sort(((x - x[p]) ** 2).sum(-1))[19] for p in positives)
    assert (d <= radius + 1e-4).all()
    assert all("neighbour of known hate" in r for r in sel.reasons)
    assert set(sel.strategies) == {"seals"}


def test_seals_grows_its_pool_as_positives_arrive() -> None:
    x, y = pool(800)
    from workbench.services.select.strategies.search import SEALSStrategy

    seals = SEALSStrategy(neighbours=10)
    cache: dict[str, object] = {}
    first = np.flatnonzero(y == "hate")[:1]
    ctx = context(x, y, np.concatenate([first, np.flatnonzero(y == "none")[:3]]), cache=cache)
    size_one = int(seals.candidate_pool(ctx).sum())
    more = np.concatenate([np.flatnonzero(y == "hate")[:5], np.flatnonzero(y == "none")[:3]])
    size_five = int(seals.candidate_pool(context(x, y, more, cache=cache)).sum())
    assert size_one == 10 and size_five > size_one


def test_mix_honours_shares_and_records_each_strategy() -> None:
    x, y = pool(800)
    ctx = context(x, y, np.arange(60))
    sel = make_strategy("mix:cluster_margin=0.7,seals=0.2,random=0.1").select(ctx, 20)
    assert len(sel) == 20 and len(set(sel.indices.tolist())) == 20
    assert sorted(sel.strategies) == sorted(
        ["cluster_margin"] * 14 + ["seals"] * 4 + ["random"] * 2
    )


def test_shares_become_counts_that_sum_to_the_batch() -> None:
    assert shares_to_counts({"a": 0.7, "b": 0.2, "c": 0.1}, 10) == {"a": 7, "b": 2, "c": 1}
    counts = shares_to_counts({"a": 1, "b": 1, "c": 1}, 10)
    assert sum(counts.values()) == 10 and max(counts.values()) - min(counts.values()) == 1


@pytest.mark.parametrize("name", ALL)
def test_excluded_labelled_and_duplicate_group_items_are_never_picked(name: str) -> None:
    x, y = pool(400)
    labelled = np.arange(40)
    excluded = np.zeros(400, dtype=bool)
    excluded[40:140] = True
    # Pairs of near-duplicates: items 2i and 2i+1 share a group.
    groups = np.arange(400) // 2
    ctx = context(x, y, labelled, excluded=excluded, groups=groups)
    sel = make_strategy(name).select(ctx, 30)
    picked = sel.indices
    assert len(picked) == 30
    assert not np.isin(picked, np.arange(140)).any()
    assert len(set(groups[picked].tolist())) == len(picked)
    assert len(sel.reasons) == len(sel.strategies) == 30 and all(sel.reasons)


def test_typiclust_cold_start_needs_no_labels_and_spreads_over_clusters() -> None:
    x, _ = pool(800)
    ctx = SelectionContext(vectors=x, rng=np.random.default_rng(0))
    sel = make_strategy("typiclust").select(ctx, 8)
    assert len(sel) == 8
    # Eight picks from eight tight blobs: their true blobs are (nearly) all different.
    blob_of = {tuple(np.round(x[i] / 4)) for i in sel.indices}
    assert len(blob_of) >= 6


@pytest.mark.parametrize("name", [*ALL, "seals/random", "mix:random=0.5,typiclust=0.5"])
def test_a_strategy_needs_a_model_exactly_when_it_says_so(name: str) -> None:
    # `needs_model` decides the cold start in batch selection: a strategy that says False must
    # run with no head, and one that says True must really read the model.
    x, _ = pool(300)
    strategy = make_strategy(name)
    no_model = SelectionContext(vectors=x, positive="hate", rng=np.random.default_rng(0))
    if strategy.needs_model:
        with pytest.raises(WorkbenchError, match="probabilities or a fitted head"):
            strategy.select(no_model, 10)
    else:
        assert len(strategy.select(no_model, 10)) == 10


def test_a_mix_needs_a_model_when_any_part_does() -> None:
    assert not make_strategy("mix:random=0.5,kmeans=0.5").needs_model
    assert make_strategy("mix:random=0.9,margin=0.1").needs_model
    assert make_strategy("mix").needs_model  # the default mix ranks by margin
    assert not make_strategy("seals/random").needs_model
    assert make_strategy("seals").needs_model


def test_parameters_after_a_colon_are_refused_by_a_strategy_that_takes_none() -> None:
    with pytest.raises(WorkbenchError, match=r"'margin' takes no `margin:\.\.\.` parameters"):
        make_strategy("margin:x=1")


def test_cold_start_replaces_only_strategies_that_need_a_model(db: Database) -> None:
    from builders import make_project
    from quality_builders import Labels, add_fused_vectors

    from workbench.services.audit import Actor
    from workbench.services.select.batch import COLD_START_STRATEGY, select_batch

    x, _ = pool(120)
    with db.sessions.begin() as s:
        p = make_project(s)
        lab = Labels(s, p)
        add_fused_vectors(s, db.settings, p, [lab.item(f"x{n}") for n in range(len(x))], x)
    system = Actor.system()
    ran = {
        name: select_batch(db, "p", name, 4, system, seed=0)
        for name in ("margin", "random", "mix:random=1", "mix")
    }
    assert all(r["cold_start"] and r["queued"] == 4 for r in ran.values())
    assert ran["margin"]["strategy"] == ran["mix"]["strategy"] == COLD_START_STRATEGY
    assert ran["random"]["strategy"] == "random"
    assert ran["mix:random=1"]["strategy"] == "mix:random=1"
    assert set(ran["mix:random=1"]["by_strategy"]) == {"random"}


def test_unknown_strategy_names_the_known_ones() -> None:
    with pytest.raises(WorkbenchError, match=r"unknown strategy 'margn'; expected one of: .*"):
        make_strategy("margn")


def test_strategy_without_probabilities_or_head_says_what_is_missing() -> None:
    x, _ = pool(50)
    with pytest.raises(WorkbenchError, match="probabilities or a fitted head"):
        make_strategy("margin").select(SelectionContext(vectors=x), 5)


def test_seed_query_picks_the_nearest_items_of_each_query_in_turn() -> None:
    from workbench.services.select.strategies.search import QuerySeedStrategy

    x, _ = pool(400)
    queries = x[[5, 300]] + 0.01
    sel = QuerySeedStrategy(queries, labels=["slur list", "threat"]).select(
        SelectionContext(vectors=x), 4
    )
    assert sel.indices[:2].tolist() == [5, 300]
    assert sel.reasons[0].startswith("near slur list") and sel.reasons[1].startswith("near threat")


def test_positive_margin_scores_the_rare_class_boundary_only() -> None:
    p = np.array(
        [
            [0.45, 0.50, 0.05],  # torn between hate and offensive: on hate's boundary
            [0.02, 0.49, 0.49],  # torn between the two common classes: far from hate's
            [0.90, 0.05, 0.05],  # surely hate
        ]
    )
    np.testing.assert_allclose(positive_margin_scores(p, 0), [0.05, 0.47, 0.85])
    x, y = pool()
    ctx = context(x, y, np.arange(80))
    sel = make_strategy("positive_margin").select(ctx, 5)
    assert len(set(sel.indices.tolist())) == 5
    assert all(r.startswith("positive margin") and "hate p=" in r for r in sel.reasons)


def test_choice_by_targets_uses_validation_figures_and_says_what_is_missed() -> None:
    from workbench.bench.al import choose_by_targets

    def row(val_aulc: float, reach: int | None, pos: float) -> dict[str, object]:
        return {
            "validation_aulc_macro_f1": {"mean": val_aulc},
            "validation_labels_to_reach_full_pool": reach,
            "positives_per_100_reviews": {"mean": pos},
            # test figures that would choose otherwise must not matter
            "aulc_macro_f1": {"mean": 0.99 if val_aulc < 0.6 else 0.1},
        }

    strategies = {
        "margin": row(0.60, 900, 10.0),
        "a": row(0.65, 400, 21.0),  # meets all three
        "b": row(0.70, 400, 12.0),  # better AULC, too few positives
        "c": row(0.55, 300, 30.0),
    }
    got = choose_by_targets(strategies, "margin")
    assert got["strategy"] == "a" and got["meets_all"]
    del strategies["a"]
    got = choose_by_targets(strategies, "margin")
    assert got["strategy"] == "b" and not got["meets_all"]
    assert got["checks"]["positives_twice_reference"] is False
