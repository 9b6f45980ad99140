"""Diversity-aware selection: cluster-margin, k-center greedy core-set, TypiClust, k-means.

Clustering and distances run on FAISS. The pool is clustered once and the result kept in the
context's cache, so later rounds only score and rank.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from workbench.services.select.strategies.base import (
    Selection,
    SelectionContext,
    Strategy,
    register,
    take_ranked,
)
from workbench.services.select.strategies.uncertainty import margin_scores, top_two


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x), dtype=np.float32)


def kmeans(
    vectors: np.ndarray, k: int, seed: int, *, niter: int = 20, max_points_per_centroid: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """FAISS k-means: (centroids [k, d], assignment of every row). Trained on a subsample."""
    n, d = vectors.shape
    k = max(1, min(k, n))
    km = faiss.Kmeans(
        d,
        k,
        niter=niter,
        seed=int(seed),
        max_points_per_centroid=max_points_per_centroid,
        verbose=False,
    )
    sample_size = min(n, k * max_points_per_centroid)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, sample_size, replace=False)) if sample_size < n else None
    km.train(_as_f32(vectors[sample] if sample is not None else vectors))
    assign = np.empty(n, dtype=np.int64)
    step = 262_144
    for s in range(0, n, step):
        _, a = km.index.search(_as_f32(vectors[s : s + step]), 1)
        assign[s : s + step] = a[:, 0]
    centroids = np.asarray(km.centroids, dtype=np.float32)
    return centroids.copy(), assign


def cached_clusters(ctx: SelectionContext, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    key = f"kmeans:{k}:{seed}:{ctx.size}"
    if key not in ctx.cache:
        ctx.cache[key] = kmeans(ctx.vectors, k, seed)
    result: tuple[np.ndarray, np.ndarray] = ctx.cache[key]
    return result


@register
class ClusterMarginStrategy(Strategy):
    """Cluster-margin (Citovsky et al. 2021): the `oversample * n` lowest margins, taken round
    robin over pool clusters, smallest cluster first, so one batch spans many regions.

    The paper clusters with agglomerative clustering; k-means (FAISS) scales to a million.
    """

    name = "cluster_margin"

    def __init__(self, n_clusters: int = 100, oversample: float = 10.0, seed: int = 0) -> None:
        self.n_clusters = n_clusters
        self.oversample = oversample
        self.seed = seed

    def prepare(self, ctx: SelectionContext) -> None:
        cached_clusters(ctx, self.n_clusters, self.seed)

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        _, assign = cached_clusters(ctx, self.n_clusters, self.seed)
        k = int(assign.max()) + 1 if len(assign) else 0
        proba = ctx.proba()
        blocked = ctx.blocked()
        cand = np.flatnonzero(~blocked)
        margins = margin_scores(proba[cand])
        m = min(len(cand), max(n, int(self.oversample * n)))
        top = np.argpartition(margins, m - 1)[:m] if m < len(cand) else np.arange(len(cand))
        top = top[np.argsort(margins[top], kind="stable")]
        pool = cand[top]
        clusters = assign[pool]
        # Round robin: clusters holding fewest candidates first (Citovsky et al.), each
        # giving its lowest-margin item per turn.
        by_cluster: dict[int, list[int]] = {}
        for i, c in zip(pool.tolist(), clusters.tolist(), strict=True):
            by_cluster.setdefault(c, []).append(i)
        queues = sorted(by_cluster.values(), key=len)
        order: list[int] = []
        depth = 0
        while len(order) < len(pool):
            for q in queues:
                if depth < len(q):
                    order.append(q[depth])
            depth += 1
        picked = take_ranked(ctx, np.asarray(order, dtype=np.int64), n, blocked)
        chosen = margin_scores(proba[picked])
        pairs = top_two(proba[picked], ctx.class_names())
        reasons = [
            f"margin {s:.2f} between {a} and {b}; cluster {assign[i]} of {k}"
            for i, s, (a, b) in zip(picked, chosen, pairs, strict=True)
        ]
        return Selection(picked, chosen, reasons, [self.name] * len(picked))


def _sq_dist_to(vectors: np.ndarray, centres: np.ndarray, step: int = 131_072) -> np.ndarray:
    """Squared L2 distance of every row to its nearest centre (FAISS exact search)."""
    index = faiss.IndexFlatL2(centres.shape[1])
    index.add(_as_f32(centres))
    out = np.empty(vectors.shape[0], dtype=np.float32)
    for s in range(0, vectors.shape[0], step):
        d, _ = index.search(_as_f32(vectors[s : s + step]), 1)
        out[s : s + step] = d[:, 0]
    return out


@register
class CoresetStrategy(Strategy):
    """k-center greedy core-set (Sener & Savarese 2018): repeatedly take the candidate farthest
    from every labelled or already chosen item.

    Distances to the labelled set are kept in the cache and only updated for new labels.
    """

    name = "coreset"
    needs_model = False

    def prepare(self, ctx: SelectionContext) -> None:
        self._distances(ctx)

    def _distances(self, ctx: SelectionContext) -> np.ndarray:
        state: dict[str, Any] = ctx.cache.setdefault("coreset", {})
        known = state.get("labelled", np.zeros(0, dtype=np.int64))
        new = np.setdiff1d(ctx.labelled, known)
        if "mind" not in state:
            state["mind"] = np.full(ctx.size, np.inf, dtype=np.float32)
        mind: np.ndarray = state["mind"]
        if len(new):
            np.minimum(mind, _sq_dist_to(ctx.vectors, np.asarray(ctx.vectors[new])), out=mind)
            state["labelled"] = np.union1d(known, new)
        if "norms" not in state:
            state["norms"] = np.einsum("ij,ij->i", ctx.vectors, ctx.vectors).astype(np.float32)
        return mind

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        mind = self._distances(ctx)
        norms: np.ndarray = ctx.cache["coreset"]["norms"]
        blocked = ctx.blocked()
        dist = mind.copy()
        if not np.isfinite(dist).any():
            # Nothing labelled yet: start from a random candidate, as in the paper.
            cand = np.flatnonzero(~blocked)
            if len(cand) == 0:
                return Selection(np.zeros(0), np.zeros(0), [], [])
            dist[cand[ctx.rng.integers(len(cand))]] = np.float32(np.finfo(np.float32).max)
        dist[blocked] = -1.0
        groups = ctx.groups
        picked: list[int] = []
        scores: list[float] = []
        while len(picked) < n:
            i = int(np.argmax(dist))
            if dist[i] < 0:
                break
            picked.append(i)
            scores.append(float(np.sqrt(max(dist[i], 0.0))) if np.isfinite(dist[i]) else 0.0)
            dist[i] = -1.0
            if groups is not None and groups[i] >= 0:
                dist[groups == groups[i]] = -1.0
            c = np.asarray(ctx.vectors[i], dtype=np.float32)
            d_new = norms - 2.0 * (ctx.vectors @ c) + float(c @ c)
            live = dist >= 0
            dist[live] = np.minimum(dist[live], d_new[live])
        idx = np.asarray(picked, dtype=np.int64)
        reasons = [
            f"core-set: distance {s:.2f} to the nearest labelled or chosen item" for s in scores
        ]
        return Selection(idx, np.asarray(scores), reasons, [self.name] * len(idx))


def _typical(vectors: np.ndarray, members: np.ndarray, k: int, rng: np.random.Generator) -> int:
    """TypiClust typicality: the member with the smallest mean distance to its k neighbours."""
    if len(members) > 5000:
        # Typicality is a density estimate; a random 5,000 members estimate it well enough.
        members = rng.choice(members, 5000, replace=False)
    x = _as_f32(vectors[members])
    kk = min(k + 1, len(members))
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    d, _ = index.search(x, kk)
    mean_d = np.sqrt(np.maximum(d[:, 1:], 0)).mean(axis=1) if kk > 1 else np.zeros(len(members))
    return int(members[int(np.argmin(mean_d))])


@register
class TypiClustStrategy(Strategy):
    """TypiClust (Hacohen et al. 2022), for cold start: cluster into labelled + n clusters,
    then take the most typical item of each of the largest clusters that hold no label."""

    name = "typiclust"
    needs_model = False

    def __init__(self, max_clusters: int = 500, neighbours: int = 20, seed: int = 0) -> None:
        self.max_clusters = max_clusters
        self.neighbours = neighbours
        self.seed = seed

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        k = min(self.max_clusters, len(ctx.labelled) + n)
        _, assign = cached_clusters(ctx, k, self.seed)
        blocked = ctx.blocked()
        sizes = np.bincount(assign, minlength=k)
        covered = np.zeros(k, dtype=bool)
        covered[np.unique(assign[ctx.labelled])] = True
        order = [c for c in np.argsort(-sizes, kind="stable") if sizes[c] > 0]
        # Uncovered clusters first (largest first), then covered ones, so n picks always exist.
        order = [c for c in order if not covered[c]] + [c for c in order if covered[c]]
        picked: list[int] = []
        reasons: list[str] = []
        scores: list[float] = []
        seen_groups: set[Any] = set()
        for c in order:
            if len(picked) == n:
                break
            members = np.flatnonzero((assign == c) & ~blocked)
            if ctx.groups is not None and seen_groups:
                members = members[~np.isin(ctx.groups[members], list(seen_groups))]
            if len(members) == 0:
                continue
            i = _typical(ctx.vectors, members, self.neighbours, ctx.rng)
            picked.append(i)
            if ctx.groups is not None and ctx.groups[i] >= 0:
                seen_groups.add(ctx.groups[i])
            scores.append(float(sizes[c]))
            state = "labelled already" if covered[c] else "none labelled"
            reasons.append(f"most typical item of cluster {c} of {k} ({sizes[c]} items, {state})")
        return Selection(np.asarray(picked), np.asarray(scores), reasons, [self.name] * len(picked))


@register
class KMeansStrategy(Strategy):
    """Cold start by plain k-means: the item nearest each of n centroids."""

    name = "kmeans"
    needs_model = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        blocked = ctx.blocked()
        cand = np.flatnonzero(~blocked)
        if len(cand) == 0:
            return Selection(np.zeros(0), np.zeros(0), [], [])
        centroids, _ = kmeans(ctx.vectors[cand], n, self.seed + len(ctx.labelled))
        index = faiss.IndexFlatL2(centroids.shape[1])
        index.add(_as_f32(ctx.vectors[cand]))
        _, nearest = index.search(centroids, min(10, len(cand)))
        order = [int(cand[j]) for col in range(nearest.shape[1]) for j in nearest[:, col] if j >= 0]
        picked = take_ranked(ctx, np.asarray(order, dtype=np.int64), n, blocked)
        reasons = [f"nearest item to k-means centroid (k={len(centroids)})"] * len(picked)
        return Selection(picked, np.zeros(len(picked)), reasons, [self.name] * len(picked))
