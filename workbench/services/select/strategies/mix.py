"""A mix: one batch combined from several strategies by share, each pick naming its chooser.

A random share keeps an unbiased sample flowing for evaluation and calibration while the rest
of the batch goes where the model learns most or where rare violations are found.
"""

from __future__ import annotations

import numpy as np

from workbench.errors import WorkbenchError
from workbench.services.select.strategies.base import (
    Selection,
    SelectionContext,
    Strategy,
    make_strategy,
    register,
)


def shares_to_counts(shares: dict[str, float], n: int) -> dict[str, int]:
    """Largest-remainder rounding: the counts sum to n and follow the shares as closely as can."""
    total = sum(shares.values())
    if total <= 0 or any(v < 0 for v in shares.values()):
        raise WorkbenchError(f"mix shares must be non-negative and not all zero, found {shares}")
    exact = {k: n * v / total for k, v in shares.items()}
    counts = {k: int(np.floor(v)) for k, v in exact.items()}
    left = n - sum(counts.values())
    for k in sorted(exact, key=lambda k: counts[k] - exact[k])[:left]:
        counts[k] += 1
    return counts


@register
class MixStrategy(Strategy):
    """Strategies by share, run in order; later ones never pick what earlier ones picked."""

    name = "mix"

    def __init__(self, shares: dict[str, float] | None = None) -> None:
        if not shares:
            shares = {"cluster_margin": 0.7, "seals": 0.2, "random": 0.1}
        self.shares = dict(shares)
        self.parts: dict[str, Strategy] = {k: make_strategy(k) for k in self.shares}
        self.needs_model = any(part.needs_model for part in self.parts.values())

    @classmethod
    def from_spec(cls, spec: str) -> MixStrategy:
        """`cluster_margin=0.7,seals=0.2,random=0.1`, the text after `mix:` (shares need not sum
        to one)."""
        shares: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, _, value = part.partition("=")
            try:
                shares[name.strip()] = float(value)
            except ValueError:
                raise WorkbenchError(
                    f"mix part {part!r}: expected STRATEGY=SHARE, e.g. margin=0.7"
                ) from None
        if not shares:
            raise WorkbenchError(f"'mix:{spec}': a mix needs at least one STRATEGY=SHARE")
        return cls(shares)

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        counts = shares_to_counts(self.shares, n)
        parts: list[Selection] = []
        taken: list[int] = []
        for name, strategy in self.parts.items():
            want = counts[name]
            if want == 0:
                continue
            got = strategy.select(ctx.without(taken), want)
            got.strategies = [name] * len(got)
            parts.append(got)
            taken.extend(got.indices.tolist())
        if len(taken) < n:
            # A part ran short (say, too few search candidates): the first part fills the gap.
            first = next(iter(self.parts))
            got = self.parts[first].select(ctx.without(taken), n - len(taken))
            got.strategies = [first] * len(got)
            parts.append(got)
        return Selection.concat(parts)
