"""Rare-class search: SEALS (Coleman et al. 2022) and seeds from a query or example items.

SEALS restricts any base strategy to the approximate nearest neighbours of the labelled
positives, so a rare policy violation is searched where earlier ones were found; the
candidate pool grows as new positives arrive. The pool's index is built once and cached.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from workbench.errors import WorkbenchError
from workbench.services.select.strategies.base import (
    Selection,
    SelectionContext,
    Strategy,
    make_strategy,
    register,
    take_ranked,
)

EXACT_BELOW = 200_000  # below this many items an exact index is fast enough and exact


def build_pool_index(vectors: np.ndarray, seed: int = 0) -> Any:
    """A FAISS index over the pool: exact under 200k rows, IVF-flat above (built in seconds)."""
    n, d = vectors.shape
    index: Any
    if n < EXACT_BELOW:
        index = faiss.IndexFlatL2(d)
    else:
        nlist = int(min(1024, max(64, np.sqrt(n) / 2)))
        quantizer = faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist)
        rng = np.random.default_rng(seed)
        train = np.sort(rng.choice(n, min(n, nlist * 64), replace=False))
        index.train(np.ascontiguousarray(vectors[train], dtype=np.float32))
        index.nprobe = 16
    step = 131_072
    for s in range(0, n, step):
        index.add(np.ascontiguousarray(vectors[s : s + step], dtype=np.float32))
    return index


def pool_index(ctx: SelectionContext) -> Any:
    """The cached pool index (a caller may put its own FAISS index under 'pool_index')."""
    if "pool_index" not in ctx.cache:
        ctx.cache["pool_index"] = build_pool_index(ctx.vectors)
    return ctx.cache["pool_index"]


@register
class SEALSStrategy(Strategy):
    """Any base strategy, run only among the k nearest neighbours of the labelled positives."""

    name = "seals"

    def __init__(self, base: str | Strategy = "margin", neighbours: int = 100) -> None:
        self.base = make_strategy(base) if isinstance(base, str) else base
        self.neighbours = neighbours
        # The search pool comes from labels alone; the ranking inside it is the base's.
        self.needs_model = self.base.needs_model

    def prepare(self, ctx: SelectionContext) -> None:
        pool_index(ctx)
        self.base.prepare(ctx)

    def candidate_pool(self, ctx: SelectionContext) -> np.ndarray:
        """Boolean mask: neighbours of every labelled positive so far (grown incrementally)."""
        state: dict[str, Any] = ctx.cache.setdefault(f"seals:{self.neighbours}", {})
        if "mask" not in state:
            state["mask"] = np.zeros(ctx.size, dtype=bool)
            state["expanded"] = np.zeros(0, dtype=np.int64)
        positives = ctx.positive_labelled()
        new = np.setdiff1d(positives, state["expanded"])
        if len(new):
            index = pool_index(ctx)
            k = min(self.neighbours, ctx.size)
            _, nn = index.search(np.ascontiguousarray(ctx.vectors[new], dtype=np.float32), k)
            nn = nn[nn >= 0]
            state["mask"][nn] = True
            state["expanded"] = np.union1d(state["expanded"], new)
        mask: np.ndarray = state["mask"]
        return mask

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        pool = self.candidate_pool(ctx)
        blocked = ctx.blocked()
        inside = pool & ~blocked
        n_pos = len(ctx.positive_labelled())
        parts: list[Selection] = []
        if inside.any():
            sub = ctx.without([])
            sub.excluded = blocked | ~pool
            got = self.base.select(sub, n)
            size = int(inside.sum())
            got.reasons = [
                f"{r}; neighbour of known {ctx.positive} items ({n_pos} known, {size} candidates)"
                for r in got.reasons
            ]
            parts.append(got)
        taken = np.concatenate([p.indices for p in parts]) if parts else np.zeros(0, np.int64)
        if len(taken) < n:
            # Too few neighbours (or no positive yet): the base strategy over the whole pool.
            rest = self.base.select(ctx.without(taken), n - len(taken))
            rest.reasons = [
                f"{r}; outside the search pool (too few neighbours of known {ctx.positive})"
                for r in rest.reasons
            ]
            parts.append(rest)
        out = Selection.concat(parts)
        out.strategies = [self.name] * len(out)
        return out


class QuerySeedStrategy(Strategy):
    """Cold start from a text query or example items: their nearest pool items, round robin."""

    name = "seed_query"
    needs_model = False

    def __init__(self, query_vectors: np.ndarray, labels: list[str] | None = None) -> None:
        q = np.asarray(query_vectors, dtype=np.float32)
        if q.ndim != 2 or len(q) == 0:
            raise WorkbenchError(
                f"seed_query needs query vectors of shape [m, dim], found shape {q.shape}"
            )
        self.query_vectors = q
        self.labels = labels or [f"query {i + 1}" for i in range(len(q))]

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        if self.query_vectors.shape[1] != ctx.vectors.shape[1]:
            raise WorkbenchError(
                f"query vectors have {self.query_vectors.shape[1]} dimensions, "
                f"the pool has {ctx.vectors.shape[1]}"
            )
        index = pool_index(ctx)
        blocked = ctx.blocked()
        k = min(ctx.size, n + int(blocked.sum()) + 10)
        d, nn = index.search(self.query_vectors, k)
        order = nn.T.reshape(-1)  # round robin over queries: every query's first, then second
        which = np.tile(np.arange(len(self.query_vectors)), k)
        dist = d.T.reshape(-1)
        keep = order >= 0
        order, which, dist = order[keep], which[keep], dist[keep]
        picked = take_ranked(ctx, order, n, blocked)
        first = {int(i): j for j, i in reversed(list(enumerate(order)))}
        reasons = [
            f"near {self.labels[which[first[int(i)]]]} (distance "
            f"{np.sqrt(max(dist[first[int(i)]], 0)):.2f})"
            for i in picked
        ]
        scores = np.asarray([dist[first[int(i)]] for i in picked])
        return Selection(picked, scores, reasons, [self.name] * len(picked))
