"""The local engine: one worker in this process, units in order; what the workbench always did."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from workbench.engines.base import BatchEngine, WorkerSpec
from workbench.progress import ProgressFactory, no_progress


class LocalEngine(BatchEngine[Any, Any]):
    name = "local"
    in_process = True

    def map(
        self,
        units: Sequence[Any],
        spec: WorkerSpec[Any, Any],
        *,
        sizes: Sequence[int] | None = None,
        progress: ProgressFactory = no_progress,
        desc: str = "",
    ) -> Iterator[tuple[int, Any]]:
        if not units:
            return
        worker = spec()
        bar = progress(total=sum(sizes) if sizes is not None else len(units), desc=desc)
        try:
            for i, unit in enumerate(units):
                result = worker(unit)
                # Yield before counting: the caller writes the batch, then it is done.
                yield i, result
                bar.update(sizes[i] if sizes is not None else 1)
        finally:
            bar.close()
            close = getattr(worker, "close", None)
            if close is not None:
                close()
