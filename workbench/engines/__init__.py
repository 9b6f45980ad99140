"""Batch engines: where embedding, pool scoring and scan sweeps run (this process, or Ray)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from workbench.engines.base import ENGINE_NAMES, BatchEngine
from workbench.engines.local import LocalEngine
from workbench.errors import WorkbenchError


def make_engine(name: str) -> BatchEngine:  # type: ignore[type-arg]
    """The engine called `name` (`local` or `ray`)."""
    if name == "local":
        return LocalEngine()
    if name == "ray":
        # Here, not at the top: Ray is an optional extra and takes seconds to import.
        from workbench.engines.ray_engine import RayEngine

        return RayEngine()
    raise WorkbenchError(f"unknown engine {name!r}; expected one of {', '.join(ENGINE_NAMES)}")


@contextmanager
def engine_scope(choice: BatchEngine | str | None, default: str) -> Iterator[BatchEngine]:  # type: ignore[type-arg]
    """The engine a caller asked for (an engine, a name, or None for `default`, the project's
    setting); one this made is closed afterwards, one passed in is left to its owner."""
    if isinstance(choice, BatchEngine):
        yield choice
        return
    engine = make_engine(choice or default)
    try:
        yield engine
    finally:
        engine.close()
