"""The batch engine interface: run a worker over units of work, one model load per worker.

The services cut their batch work (items to embed, id ranges of the pool to score, and the
`workbench scan` sweeps of the scanning branch) into units and describe the worker as a
picklable `WorkerSpec`; an engine decides where the workers run. The results come back to the
caller, which writes them exactly as before, so nothing downstream knows which engine ran.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from workbench.progress import ProgressFactory, no_progress

U = TypeVar("U")
R = TypeVar("R")
U_contra = TypeVar("U_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)

ENGINE_NAMES = ("local", "ray")


class WorkerSpec(Protocol[U_contra, R_co]):
    """Makes one worker: called once per worker process (a Ray actor loads its model here),
    the worker is then called once per unit. Must pickle for engines that run elsewhere."""

    def __call__(self) -> Callable[[U_contra], R_co]: ...


class BatchEngine(ABC, Generic[U, R]):
    """Where batch work runs. `map` yields (unit index, result) as units finish, in any order:
    each result is written on its own (one transaction per batch), so order does not matter
    and a run that stops keeps every batch written before it stopped."""

    name: str
    # Whether workers run in this process: then a spec may hold objects that do not pickle
    # (an open database, a loaded encoder) instead of the recipe to make them again.
    in_process: bool

    @abstractmethod
    def map(
        self,
        units: Sequence[Any],
        spec: WorkerSpec[Any, Any],
        *,
        sizes: Sequence[int] | None = None,
        progress: ProgressFactory = no_progress,
        desc: str = "",
    ) -> Iterator[tuple[int, Any]]:
        """Run `spec()`'s workers over `units`; `sizes` (items per unit) drive the progress bar."""

    def close(self) -> None:
        """Release what the engine started (a local Ray instance); a no-op by default."""

    def __enter__(self) -> BatchEngine[U, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
