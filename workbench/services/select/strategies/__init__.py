"""Selection strategies behind one interface (`Strategy.select(ctx, n)`), found by name."""

from workbench.services.select.strategies import diversity, mix, search, uncertainty
from workbench.services.select.strategies.base import (
    STRATEGIES,
    Selection,
    SelectionContext,
    Strategy,
    make_strategy,
)

__all__ = [
    "STRATEGIES",
    "Selection",
    "SelectionContext",
    "Strategy",
    "diversity",
    "make_strategy",
    "mix",
    "search",
    "uncertainty",
]
