"""The one selection interface: `Strategy.select(ctx, n) -> Selection`, plus the registry.

Every strategy sees the same context (pool vectors, predicted probabilities or a head, the
labelled items, what is excluded, near-duplicate groups, a seeded rng), so wrappers such as
rare-class search and the mix compose with any base strategy, as in small-text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from workbench.errors import WorkbenchError

PROBA_CHUNK = 65_536  # rows scored at once: bounded memory on a memory-mapped 1M-row pool


@dataclass
class SelectionContext:
    """What a strategy may look at. Indices are rows of `vectors` (the whole pool).

    `probabilities` ([n, k], columns in `classes` order) may be left out when `head` is given;
    it is then computed once, lazily, in chunks. `cache` survives between rounds of the same
    pool, so one-time work (clusters, a nearest-neighbour index) is done once.
    """

    vectors: np.ndarray
    labelled: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    probabilities: np.ndarray | None = None
    classes: Sequence[Any] | None = None
    head: Any = None
    excluded: np.ndarray | None = None
    groups: np.ndarray | None = None
    positive: Any = None
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.vectors.shape[0]
        self.labelled = np.asarray(self.labelled, dtype=np.int64)
        if len(self.labels) != len(self.labelled):
            raise WorkbenchError(
                f"{len(self.labelled)} labelled indices but {len(self.labels)} labels"
            )
        if self.excluded is not None and self.excluded.shape != (n,):
            raise WorkbenchError(
                f"excluded mask has shape {self.excluded.shape}; expected ({n},), one per item"
            )
        if self.groups is not None and len(self.groups) != n:
            raise WorkbenchError(f"{len(self.groups)} group ids for {n} pool items")
        if self.probabilities is not None and self.probabilities.shape[0] != n:
            raise WorkbenchError(
                f"probabilities for {self.probabilities.shape[0]} items, the pool has {n}"
            )
        if self.head is not None and self.classes is None:
            self.classes = list(self.head.classes_)

    @property
    def size(self) -> int:
        return int(self.vectors.shape[0])

    def proba(self) -> np.ndarray:
        """Predicted probabilities for the whole pool ([n, k])."""
        if self.probabilities is None:
            if self.head is None:
                raise WorkbenchError(
                    "this strategy needs predicted probabilities or a fitted head; found neither"
                )
            parts = [
                self.head.predict_proba(np.asarray(self.vectors[s : s + PROBA_CHUNK]))
                for s in range(0, self.size, PROBA_CHUNK)
            ]
            self.probabilities = np.concatenate(parts).astype(np.float32)
        return self.probabilities

    def class_names(self) -> list[str]:
        k = self.proba().shape[1]
        return (
            [str(c) for c in self.classes]
            if self.classes is not None
            else [str(i) for i in range(k)]
        )

    def blocked(self) -> np.ndarray:
        """Items that may not be picked: excluded, labelled, or a near-duplicate of either."""
        mask = np.zeros(self.size, dtype=bool) if self.excluded is None else self.excluded.copy()
        mask[self.labelled] = True
        if self.groups is not None:
            taken = np.unique(self.groups[mask])
            taken = taken[taken >= 0]
            mask |= np.isin(self.groups, taken)
        return mask

    def candidates(self) -> np.ndarray:
        """Indices that may be picked."""
        return np.flatnonzero(~self.blocked())

    def positive_labelled(self) -> np.ndarray:
        """Labelled items whose label is the positive (rare) class."""
        if self.positive is None:
            raise WorkbenchError("rare-class search needs `positive`, the class to search for")
        return self.labelled[np.asarray(self.labels == self.positive, dtype=bool)]

    def without(self, picked: Iterable[int]) -> SelectionContext:
        """The same context with `picked` excluded as well (used to build a batch in parts)."""
        excluded = self.blocked()
        excluded[np.fromiter(picked, dtype=np.int64)] = True
        ctx = SelectionContext(
            vectors=self.vectors,
            labelled=self.labelled,
            labels=self.labels,
            probabilities=self.probabilities,
            classes=self.classes,
            head=self.head,
            excluded=excluded,
            groups=self.groups,
            positive=self.positive,
            rng=self.rng,
            cache=self.cache,
        )
        return ctx


@dataclass
class Selection:
    """Ranked picks: pool indices, a score each, a reason a person can read, who chose it."""

    indices: np.ndarray
    scores: np.ndarray
    reasons: list[str]
    strategies: list[str]

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices, dtype=np.int64)
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if not (len(self.indices) == len(self.scores) == len(self.reasons) == len(self.strategies)):
            raise ValueError("a selection needs one score, reason and strategy per index")

    def __len__(self) -> int:
        return len(self.indices)

    @staticmethod
    def concat(parts: Sequence[Selection]) -> Selection:
        return Selection(
            indices=np.concatenate([p.indices for p in parts]) if parts else np.zeros(0),
            scores=np.concatenate([p.scores for p in parts]) if parts else np.zeros(0),
            reasons=[r for p in parts for r in p.reasons],
            strategies=[s for p in parts for s in p.strategies],
        )


def take_ranked(
    ctx: SelectionContext,
    order: np.ndarray,
    n: int,
    blocked: np.ndarray | None = None,
) -> np.ndarray:
    """The first `n` of `order` that are not blocked, at most one per near-duplicate group."""
    blocked = ctx.blocked() if blocked is None else blocked
    picked: list[int] = []
    seen: set[Any] = set()
    groups = ctx.groups
    for i in order:
        i = int(i)
        if blocked[i]:
            continue
        if groups is not None:
            g = groups[i]
            if g >= 0:
                if g in seen:
                    continue
                seen.add(g)
        picked.append(i)
        if len(picked) == n:
            break
    return np.asarray(picked, dtype=np.int64)


class Strategy(ABC):
    """A way to rank the pool. Subclasses set `name` and implement `select`."""

    name: ClassVar[str]
    # Whether `select` reads the model's predictions. Batch selection asks this to decide a
    # cold start (no model yet); a wrapper or a mix answers for its parts, per instance.
    needs_model: bool = True

    @abstractmethod
    def select(self, ctx: SelectionContext, n: int) -> Selection:
        """The `n` items to review next (fewer only when fewer may be picked), best first."""

    def prepare(self, ctx: SelectionContext) -> None:  # noqa: B027  (a hook; most need none)
        """One-time work that later rounds reuse (clusters, an index), kept in `ctx.cache`."""

    @classmethod
    def from_spec(cls, spec: str) -> Strategy:
        """The strategy from the text after `name:` (`mix:margin=0.7,random=0.3`)."""
        raise WorkbenchError(f"strategy {cls.name!r} takes no `{cls.name}:...` parameters")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


STRATEGIES: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    STRATEGIES[cls.name] = cls
    return cls


def make_strategy(name: str, **params: Any) -> Strategy:
    """A strategy by its CLI name.

    `mix:cluster_margin=0.7,seals=0.2,random=0.1` makes a mix (text after the colon goes to the
    strategy's `from_spec`); `seals/top_positive` wraps a base strategy.

    The registry is full whenever this module can be imported: importing it runs the package's
    `__init__` first, which imports every strategy module.
    """
    head, colon, spec = name.partition(":")
    if colon:
        return _registered(head).from_spec(spec)
    base_name, _, inner = name.partition("/")
    if inner:
        # `seals/top_positive`: a wrapper strategy around a named base strategy.
        return make_strategy(base_name, base=inner, **params)
    return _registered(name)(**params)


def _registered(name: str) -> type[Strategy]:
    if name not in STRATEGIES:
        known = ", ".join(sorted(STRATEGIES))
        raise WorkbenchError(f"unknown strategy {name!r}; expected one of: {known}")
    return STRATEGIES[name]
