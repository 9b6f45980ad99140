"""FAISS vector indexes over unit vectors (inner product = cosine), keyed by item id.

Exact (`IndexIDMap2(IndexFlatIP)`) below a size threshold; approximate IVF above it, with
`nlist` chosen from the size and `nprobe` calibrated against exact search on a sample, so the
index meets a recall target instead of trusting a rule of thumb. The IVF lists hold the vectors
as float16 (`IndexIVFScalarQuantizer`, QT_fp16): a query scans half the bytes of IVF-Flat, and
scanning is memory-bound. Measured on 1M MiniLM-mixture vectors (benchmarks/knn-*.json and the
notes in the README): at nprobe 256 IVF-Flat took 15.1 ms per query for recall@10 0.979, fp16
8.1 ms for 0.988 (the fp16 rounding changes no ranking that matters at 384 dimensions); 8-bit
scalar quantisation was no faster than fp16 and lost recall (0.964 at nprobe 256). IVF rather
than HNSW because IVF supports removing and updating vectors in place, which re-embedding
changed items needs.
The exact index is kept as the reference implementation the approximate one is tested against.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

IndexKind = Literal["auto", "flat", "ivf"]
EXACT_THRESHOLD = 50_000  # below this, exact search is fast enough and needs no training
RECALL_TARGET = 0.96  # calibrate nprobe above the 0.95 promise, for headroom on new queries


@dataclass
class IndexMeta:
    kind: str
    dim: int
    count: int
    nlist: int | None = None
    nprobe: int | None = None
    calibrated_recall_at_10: float | None = None
    trained_on: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _as_ids(ids: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(ids, dtype=np.int64)


def choose_nlist(n: int) -> int:
    """About 4·sqrt(n) lists (FAISS's guideline), a power of two, at least 16."""
    return int(max(16, 2 ** round(math.log2(4 * math.sqrt(max(n, 1))))))


class VectorIndex:
    """One searchable set of item vectors."""

    def __init__(self, index: faiss.Index, meta: IndexMeta) -> None:
        self.index = index
        self.meta = meta

    # -- building -------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        ids: np.ndarray,
        vectors: np.ndarray,
        *,
        kind: IndexKind = "auto",
        exact_threshold: int = EXACT_THRESHOLD,
        recall_target: float = RECALL_TARGET,
        seed: int = 0,
    ) -> VectorIndex:
        vectors, ids = _as_f32(vectors), _as_ids(ids)
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise ValueError(f"need vectors [n, d] and n ids, got {vectors.shape} and {ids.shape}")
        n, dim = vectors.shape
        if kind == "auto":
            kind = "flat" if n < exact_threshold else "ivf"
        if kind == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
            index.add_with_ids(vectors, ids)
            return cls(index, IndexMeta(kind="flat", dim=dim, count=n))
        nlist = choose_nlist(n)
        if n < nlist * 4:
            raise ValueError(f"an IVF index with {nlist} lists needs at least {nlist * 4} vectors")
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
        rng = np.random.default_rng(seed)
        n_train = min(n, nlist * 40)
        train = vectors[rng.choice(n, n_train, replace=False)] if n_train < n else vectors
        index.cp.seed = seed
        index.train(train)
        index.add_with_ids(vectors, ids)
        meta = IndexMeta(
            kind="ivf",
            dim=dim,
            count=n,
            nlist=nlist,
            trained_on=n_train,
            extra={"storage": "fp16"},
        )
        vi = cls(index, meta)
        vi.calibrate(vectors, ids, recall_target=recall_target, seed=seed)
        return vi

    def calibrate(
        self,
        vectors: np.ndarray,
        ids: np.ndarray,
        *,
        recall_target: float,
        seed: int = 0,
        n_queries: int = 512,
        k: int = 10,
    ) -> None:
        """Pick the smallest nprobe whose recall@k against exact search meets the target.

        nprobe doubles until the target is met, then a bisection between the last two values
        (to within an eighth) finds the smallest that still meets it: query time grows
        linearly with nprobe, so 160 instead of 256 is a third faster."""
        if self.meta.kind != "ivf":
            return
        rng = np.random.default_rng(seed + 1)
        q_idx = rng.choice(len(vectors), min(n_queries, len(vectors)), replace=False)
        queries = _as_f32(vectors[q_idx])
        exact = faiss.IndexFlatIP(self.meta.dim)
        exact.add(_as_f32(vectors))
        _, true_rows = exact.search(queries, k + 1)
        truth = [set(ids[r].tolist()) - {ids[q]} for r, q in zip(true_rows, q_idx, strict=True)]
        ivf = faiss.extract_index_ivf(self.index)

        def recall_at(nprobe: int) -> float:
            ivf.nprobe = nprobe
            _, got = self.index.search(queries, k + 1)
            hits = [
                len(t & (set(g.tolist()) - {ids[q]})) / max(len(t), 1)
                for t, g, q in zip(truth, got, q_idx, strict=True)
            ]
            return float(np.mean(hits))

        low, high = 0, 1  # recall_at(low) is below the target; high is the candidate
        recall = recall_at(high)
        while recall < recall_target and high < ivf.nlist:
            low, high = high, min(high * 2, ivf.nlist)
            recall = recall_at(high)
        while high - low > max(1, high // 8):
            mid = (low + high) // 2
            r = recall_at(mid)
            if r >= recall_target:
                high, recall = mid, r
            else:
                low = mid
        ivf.nprobe = high
        self.meta.nprobe = high
        self.meta.calibrated_recall_at_10 = round(recall, 4)

    # -- use ------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores (cosine) and item ids, best first; ids of -1 pad results beyond the index."""
        queries = _as_f32(np.atleast_2d(queries))
        k = max(1, min(k, max(self.count, 1)))
        if self.meta.kind == "ivf":
            # FAISS parallelises IVF search over queries by default, which leaves all but one
            # core idle for a single query ("find similar"). With fewer queries than threads,
            # parallelise over the probed lists instead (measured on 1M vectors, 2 cores:
            # p50 5.2 -> 2.8 ms at nprobe 160).
            few = len(queries) < faiss.omp_get_max_threads()
            faiss.extract_index_ivf(self.index).parallel_mode = 1 if few else 0
        scores, ids = self.index.search(queries, k)
        return scores, ids

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add_with_ids(_as_f32(vectors), _as_ids(ids))
        self.meta.count = self.count

    def remove(self, ids: np.ndarray) -> int:
        removed = int(self.index.remove_ids(faiss.IDSelectorBatch(_as_ids(ids))))
        self.meta.count = self.count
        return removed

    # -- files ----------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write atomically: a fresh generation folder, then `CURRENT` is replaced to point at it.

        A reader therefore sees the old index or the new one, never a half-written file.
        """
        folder.mkdir(parents=True, exist_ok=True)
        gen = f"gen-{uuid.uuid4().hex[:12]}"
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".tmp-"))
        faiss.write_index(self.index, str(tmp / "index.faiss"))
        (tmp / "meta.json").write_text(json.dumps(asdict(self.meta), indent=2))
        os.replace(tmp, folder / gen)
        pointer = folder / f".CURRENT-{uuid.uuid4().hex[:8]}"
        pointer.write_text(gen)
        old = read_current(folder)
        os.replace(pointer, folder / "CURRENT")
        if old and old != gen:
            shutil.rmtree(folder / old, ignore_errors=True)
        return folder / gen

    @classmethod
    def load(cls, folder: Path) -> VectorIndex | None:
        gen = read_current(folder)
        if gen is None or not (folder / gen / "index.faiss").exists():
            return None
        index = faiss.read_index(str(folder / gen / "index.faiss"))
        meta = IndexMeta(**json.loads((folder / gen / "meta.json").read_text()))
        if meta.kind == "ivf" and meta.nprobe:
            faiss.extract_index_ivf(index).nprobe = meta.nprobe
        return cls(index, meta)


def read_current(folder: Path) -> str | None:
    try:
        return (folder / "CURRENT").read_text().strip() or None
    except FileNotFoundError:
        return None


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Reference: row indices of the k best inner products, by brute force (for tests)."""
    scores = _as_f32(queries) @ _as_f32(vectors).T
    return np.argsort(-scores, axis=1)[:, :k]
