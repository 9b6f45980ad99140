"""kNN benchmark: the project's FAISS index on realistic vectors, timed per query, vs exact.

Vectors: a Gaussian mixture fitted to real MiniLM embeddings of a text column, sampled to the
requested size (uniform noise is every approximate index's worst case and proves nothing).
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

from workbench.bench.stats import percentile
from workbench.errors import WorkbenchError
from workbench.progress import ProgressFactory, no_progress
from workbench.services.vectors.index import VectorIndex


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mixture_vectors(
    texts: list[str], n: int, *, components: int = 64, seed: int = 0, encode: Any = None
) -> tuple[np.ndarray, dict[str, Any]]:
    from sklearn.mixture import GaussianMixture

    if encode is None:
        from workbench.encoders.text import MiniLMTorchEncoder

        encode = MiniLMTorchEncoder().encode
    t0 = time.perf_counter()
    real = encode(texts)
    t_enc = time.perf_counter() - t0
    gmm = GaussianMixture(
        components, covariance_type="diag", random_state=seed, reg_covar=1e-4
    ).fit(real)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    rng_state = np.random.RandomState(seed)
    gmm.random_state = rng_state
    for start in range(0, n, 200_000):
        m = min(200_000, n - start)
        y, _ = gmm.sample(m)
        out[start : start + m] = y
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    perm = np.random.default_rng(seed).permutation(n)
    return out[perm], {
        "fitted_on_texts": len(texts),
        "components": components,
        "encode_seconds": round(t_enc, 1),
    }


def run_knn_benchmark(
    data: Path,
    text_column: str,
    *,
    size: int,
    queries: int = 1000,
    k: int = 10,
    fit_texts: int = 5000,
    seed: int = 0,
    progress: ProgressFactory = no_progress,
) -> dict[str, Any]:
    if not data.is_file():  # else pandas' FileNotFoundError reads as an internal error
        raise WorkbenchError(f"{data}: no such file")
    try:
        frame = pd.read_csv(data, usecols=[text_column])
    except ValueError as exc:  # pandas names the missing column
        raise WorkbenchError(f"{data}: {exc}") from None
    if len(frame) < 64:
        # The Gaussian mixture has 64 components, each fitted on at least one text.
        raise WorkbenchError(f"{data}: {len(frame)} texts; the mixture needs at least 64")
    texts = (
        frame[text_column]
        .astype(str)
        .sample(n=min(fit_texts, len(frame)), random_state=seed)
        .tolist()
    )
    vecs, source = mixture_vectors(texts, size + queries, seed=seed)
    q, base = vecs[:queries], vecs[queries:]
    ids = np.arange(len(base), dtype=np.int64)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    index = VectorIndex.build(ids, base)
    build_s = time.perf_counter() - t0
    exact = faiss.IndexFlatIP(base.shape[1])
    exact.add(base)
    _, truth = exact.search(q, k)
    result: dict[str, Any] = {
        "vectors": size,
        "dim": int(base.shape[1]),
        "queries": queries,
        "k": k,
        "source": source,
        "index": vars(index.meta).copy(),
        "build_seconds": round(build_s, 2),
        "peak_rss_mb_after_build": round(_rss_mb(), 0),
        "rss_mb_before_build": round(rss0, 0),
    }
    for threads in (1, faiss.omp_get_max_threads()):
        faiss.omp_set_num_threads(threads)
        lat, found = [], []
        bar = progress(total=queries, desc=f"queries ({threads} thread)")
        for i in range(queries):
            t = time.perf_counter()
            _, got = index.search(q[i : i + 1], k)
            lat.append((time.perf_counter() - t) * 1000)
            found.append(got[0])
            bar.update(1)
        bar.close()
        recall = float(
            np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)])
        )
        result[f"threads_{threads}"] = {
            "p50_ms": round(percentile(lat, 50), 3),
            "p95_ms": round(percentile(lat, 95), 3),
            "recall_at_10": round(recall, 4),
        }
    faiss.omp_set_num_threads(faiss.omp_get_max_threads())
    lat = []
    for i in range(min(100, queries)):
        t = time.perf_counter()
        exact.search(q[i : i + 1], k)
        lat.append((time.perf_counter() - t) * 1000)
    result["exact_reference_p50_ms"] = round(percentile(lat, 50), 3)
    return result
