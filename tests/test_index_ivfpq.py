"""The index type follows the pool size; IVF-PQ (built in stages) keeps recall@10 >= 0.90 against
exact search on held-out queries and keeps the item ids, on clustered synthetic vectors with
the thresholds lowered so the large-pool path runs at test scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workbench.services.vectors.index import (
    PQ_MIN_TRAIN,
    VectorIndex,
    choose_kind,
    choose_pq_m,
    exact_search,
    exact_top_k,
)

DIM = 64


def clustered(n: int, seed: int, centres: int = 40, dim: int = DIM) -> np.ndarray:
    """Unit vectors around `centres` directions: neighbours are close, as with real text."""
    rng = np.random.default_rng(0)  # the same centres for the pool and its queries
    middle = rng.normal(size=(centres, dim))
    draw = np.random.default_rng(seed)
    x = middle[draw.integers(0, centres, n)] + 0.6 * draw.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall_at_10(
    index: VectorIndex, pool: np.ndarray, ids: np.ndarray, queries: np.ndarray
) -> float:
    truth = ids[exact_search(pool, queries, 10)]
    _, got = index.search(queries, 10)
    return float(np.mean([len(set(t) & set(g)) / 10 for t, g in zip(truth, got, strict=True)]))


@pytest.fixture(scope="module")
def pool() -> tuple[np.ndarray, np.ndarray]:
    vectors = clustered(8_000, seed=1)
    ids = np.arange(len(vectors), dtype=np.int64) * 7 + 1_000  # item ids, not row numbers
    return ids, vectors


@pytest.fixture(scope="module")
def ivfpq(pool: tuple[np.ndarray, np.ndarray]) -> VectorIndex:
    ids, vectors = pool
    return VectorIndex.build(
        ids, vectors, exact_threshold=1_000, pq_threshold=5_000, add_chunk=3_000
    )


def test_the_index_kind_follows_the_pool_size() -> None:
    assert choose_kind(49_999) == "flat"
    assert choose_kind(50_000) == choose_kind(999_999) == "ivf"
    assert choose_kind(1_000_000) == choose_kind(10_000_000) == "ivfpq"
    assert choose_kind(500, exact_threshold=100, pq_threshold=400) == "ivfpq"


def test_sub_quantisers_have_eight_dimensions_and_divide_the_vector() -> None:
    assert choose_pq_m(384) == 48 and choose_pq_m(768) == 64 and choose_pq_m(64) == 8
    assert all(d % choose_pq_m(d) == 0 for d in (10, 96, 100, 512, 1024))


def test_exact_top_k_by_chunks_matches_brute_force() -> None:
    vectors, queries = clustered(2_500, seed=3), clustered(20, seed=4)
    got = exact_top_k(vectors, queries, 10, chunk=700)
    want = exact_search(vectors, queries, 10)
    assert [set(r) for r in got] == [set(r) for r in want]


def test_a_large_pool_gets_ivfpq_with_recall_at_10_of_090_on_held_out_queries(
    pool: tuple[np.ndarray, np.ndarray], ivfpq: VectorIndex
) -> None:
    ids, vectors = pool
    assert ivfpq.meta.kind == "ivfpq" and ivfpq.count == len(ids)
    # Trained on a sample of 40 vectors a list (at least what PQ's codebooks need); at this
    # scale that is the whole pool, at 10M it is 0.5%.
    assert ivfpq.meta.nlist is not None
    assert ivfpq.meta.trained_on == min(len(ids), max(ivfpq.meta.nlist * 40, PQ_MIN_TRAIN))
    assert ivfpq.meta.nprobe is not None and ivfpq.meta.nprobe < ivfpq.meta.nlist  # type: ignore[operator]
    assert ivfpq.meta.calibrated_recall_at_10 is not None
    assert ivfpq.meta.calibrated_recall_at_10 >= 0.92
    held_out = clustered(300, seed=2)  # never added to the index
    assert recall_at_10(ivfpq, vectors, ids, held_out) >= 0.90


def test_ivfpq_results_are_item_ids_and_survive_a_reload(
    pool: tuple[np.ndarray, np.ndarray], ivfpq: VectorIndex, tmp_path: Path
) -> None:
    ids, vectors = pool
    scores, got = ivfpq.search(vectors[:50], 5)
    assert set(got.ravel().tolist()) <= set(ids.tolist())
    # A pool vector finds itself first, under its item id.
    assert (got[:, 0] == ids[:50]).mean() >= 0.95
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    ivfpq.save(tmp_path)
    loaded = VectorIndex.load(tmp_path)
    assert loaded is not None and loaded.meta.kind == "ivfpq"
    assert loaded.meta.nprobe == ivfpq.meta.nprobe
    _, again = loaded.search(vectors[:50], 5)
    np.testing.assert_array_equal(again, got)


def test_ivfpq_refuses_to_remove_and_says_to_rebuild(ivfpq: VectorIndex) -> None:
    with pytest.raises(ValueError, match="rebuild"):
        ivfpq.remove(np.array([1_000]))


def test_a_memory_mapped_pool_is_indexed_in_stages(tmp_path: Path) -> None:
    vectors = clustered(6_000, seed=5)
    path = tmp_path / "pool.npy"
    np.save(path, vectors)
    mapped = np.load(path, mmap_mode="r")
    ids = np.arange(len(vectors), dtype=np.int64) + 1
    index = VectorIndex.build(
        ids, mapped, exact_threshold=1_000, pq_threshold=5_000, add_chunk=2_500
    )
    assert index.meta.kind == "ivfpq" and index.count == len(vectors)
    assert recall_at_10(index, vectors, ids, clustered(200, seed=6)) >= 0.90
