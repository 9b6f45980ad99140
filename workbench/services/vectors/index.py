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
Past `PQ_THRESHOLD` (1M) the fp16 lists outgrow memory (768 bytes a 384-d vector: 7.7 GB at
10M), so the index becomes IVF-PQ (48 bytes a vector) whose candidates are re-ranked by 8-bit
scalar-quantised copies (384 bytes): about 4.5 GB at 10M × 384, under the 8 GB budget. The
re-ranking is what keeps recall@10 at 0.90: with 4 candidates per result, IVF-PQ alone reached
0.71 on clustered test vectors even scanning every list; with 16, 0.93 at nprobe 9. An OPQ
rotation (`opq=True`) is optional: it took 6 times as long to train (163 s against 27 s for
12k × 64 on this loaded 2-core machine), and the re-ranking already restores the recall.
It is built in stages: trained on a sample, filled in chunks, calibrated against exact search
computed chunk by chunk, so `vectors` may be a memory-mapped array larger than memory.
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

IndexKind = Literal["auto", "flat", "ivf", "ivfpq"]
EXACT_THRESHOLD = 50_000  # below this, exact search is fast enough and needs no training
PQ_THRESHOLD = 1_000_000  # from here on, product-quantised lists (see the module docstring)
RECALL_TARGET = 0.96  # calibrate nprobe above the 0.95 promise, for headroom on new queries
PQ_RECALL_TARGET = 0.92  # IVF-PQ promises 0.90 recall@10; the same kind of headroom
REFINE_K_FACTOR = 16  # IVF-PQ returns 16k candidates; their 8-bit copies re-rank them to k
ADD_CHUNK = 100_000  # vectors added (and exact-searched) per stage
PQ_MIN_TRAIN = 256 * 39  # k-means of each 8-bit sub-quantiser wants 39 points per centroid


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


def choose_kind(
    n: int, *, exact_threshold: int = EXACT_THRESHOLD, pq_threshold: int = PQ_THRESHOLD
) -> Literal["flat", "ivf", "ivfpq"]:
    """The index for a pool of `n` vectors: exact, then IVF (fp16), then IVF-PQ."""
    if n < exact_threshold:
        return "flat"
    return "ivf" if n < pq_threshold else "ivfpq"


def choose_pq_m(dim: int) -> int:
    """Sub-quantisers: 8 dimensions each (48 for 384-d), at most 64, dividing `dim`."""
    for m in range(min(64, max(dim // 8, 1)), 0, -1):
        if dim % m == 0:
            return m
    return 1


def exact_top_k(
    vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = ADD_CHUNK
) -> np.ndarray:
    """Row numbers of the k best inner products of each query, by brute force over chunks of
    `vectors` (so a memory-mapped array is never read whole)."""
    queries = _as_f32(queries)
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    for start in range(0, len(vectors), chunk):
        block = _as_f32(vectors[start : start + chunk])
        scores = queries @ block.T
        top = min(k, block.shape[0])
        rows = np.argpartition(-scores, top - 1, axis=1)[:, :top]
        heap.add_result(
            np.ascontiguousarray(np.take_along_axis(scores, rows, axis=1), dtype=np.float32),
            np.ascontiguousarray(rows + start, dtype=np.int64),
        )
    heap.finalize()
    return np.asarray(heap.I)


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
        pq_threshold: int = PQ_THRESHOLD,
        recall_target: float | None = None,
        pq_m: int | None = None,
        opq: bool = False,
        add_chunk: int = ADD_CHUNK,
        seed: int = 0,
    ) -> VectorIndex:
        """An index of the kind the pool size calls for (`kind="auto"`); `recall_target`
        defaults to 0.96 for IVF and 0.92 for IVF-PQ."""
        # A memory-mapped array stays one (the IVF stages read it in chunks); others are
        # made contiguous float32 once.
        if not isinstance(vectors, np.memmap):
            vectors = _as_f32(vectors)
        ids = _as_ids(ids)
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise ValueError(f"need vectors [n, d] and n ids, got {vectors.shape} and {ids.shape}")
        n, dim = vectors.shape
        if kind == "auto":
            kind = choose_kind(n, exact_threshold=exact_threshold, pq_threshold=pq_threshold)
        if kind == "flat":
            flat = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
            flat.add_with_ids(vectors, ids)
            return cls(flat, IndexMeta(kind="flat", dim=dim, count=n))
        nlist = choose_nlist(n)
        if n < nlist * 4:
            raise ValueError(f"an IVF index with {nlist} lists needs at least {nlist * 4} vectors")
        rng = np.random.default_rng(seed)
        extra: dict[str, Any]
        if kind == "ivf":
            quantizer = faiss.IndexFlatIP(dim)
            ivf = faiss.IndexIVFScalarQuantizer(
                quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
            )
            ivf.cp.seed = seed
            index: faiss.Index = ivf
            n_train = min(n, nlist * 40)
            extra = {"storage": "fp16"}
            target = RECALL_TARGET if recall_target is None else recall_target
        else:
            m = pq_m or choose_pq_m(dim)
            recipe = f"OPQ{m},IVF{nlist},PQ{m}" if opq else f"IVF{nlist},PQ{m}"
            base = faiss.index_factory(dim, recipe, faiss.METRIC_INNER_PRODUCT)
            faiss.extract_index_ivf(base).cp.seed = seed
            refine = faiss.IndexRefine(
                base,
                faiss.IndexScalarQuantizer(
                    dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
                ),
            )
            refine.k_factor = REFINE_K_FACTOR
            # IndexIDMap, not IDMap2: no reverse map to hold (400 MB at 10M ids).
            index = faiss.IndexIDMap(refine)
            n_train = min(n, max(nlist * 40, PQ_MIN_TRAIN))
            extra = {
                "storage": f"{recipe} (8-bit codes), re-ranked by SQ8",
                "k_factor": REFINE_K_FACTOR,
            }
            target = PQ_RECALL_TARGET if recall_target is None else recall_target
        # Stage 1: train on a sample (sorted rows: a memory-mapped array is read in order).
        rows = np.sort(rng.choice(n, n_train, replace=False)) if n_train < n else None
        index.train(_as_f32(vectors[rows]) if rows is not None else vectors)
        # Stage 2: add in chunks, so no full copy of the vectors is made.
        for start in range(0, n, add_chunk):
            index.add_with_ids(
                _as_f32(vectors[start : start + add_chunk]), ids[start : start + add_chunk]
            )
        meta = IndexMeta(kind=kind, dim=dim, count=n, nlist=nlist, trained_on=n_train, extra=extra)
        vi = cls(index, meta)
        # Stage 3: the smallest nprobe that meets the recall target against exact search.
        vi.calibrate(vectors, ids, recall_target=target, seed=seed)
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
        if self.meta.kind not in ("ivf", "ivfpq"):
            return
        rng = np.random.default_rng(seed + 1)
        q_idx = np.sort(rng.choice(len(vectors), min(n_queries, len(vectors)), replace=False))
        queries = _as_f32(vectors[q_idx])
        true_rows = exact_top_k(vectors, queries, k + 1)
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
        if self.meta.kind in ("ivf", "ivfpq"):
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
        if self.meta.kind == "ivfpq":
            # FAISS's refine stage cannot remove; `refresh_index` rebuilds the index instead.
            raise ValueError("an IVF-PQ index cannot remove vectors; rebuild it")
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
        if meta.kind in ("ivf", "ivfpq") and meta.nprobe:
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
