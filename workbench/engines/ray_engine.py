"""The Ray engine: Ray Data hands units of work to a pool of actors, each loading its model once.

Each unit (a batch of item ids, an id range of the pool) becomes one row and one block, so a
failed batch is retried alone: an actor that dies is restarted and its task retried
(`max_restarts`, `max_task_retries`). The results stream back to the caller, which writes them
as the local engine's results are written. Without `RAY_ADDRESS` a local Ray is started with
this machine's CPUs; with it, the same command runs on that cluster.

Actors ask for a fraction of a CPU: on a 2-CPU Ray, two one-CPU actors took every CPU and the
stage feeding them starved, so the job hung (Ray 2.60); fractional actors ran.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from workbench.engines.base import BatchEngine, WorkerSpec
from workbench.errors import WorkbenchError
from workbench.progress import ProgressFactory, no_progress

try:
    import ray
    from ray.data import DataContext
except ImportError as exc:  # an optional extra: say how to get it
    raise WorkbenchError(
        "the ray engine needs Ray, an optional extra: pip install 'workbench[ray]'"
    ) from exc

CPUS_PER_ACTOR = 0.5
RETRIES = 3


class _UnitRunner:
    """The actor: makes its worker once, then runs it on each unit of each batch it is given."""

    def __init__(self, spec: WorkerSpec[Any, Any]) -> None:
        self.worker: Callable[[Any], Any] = spec()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Units and results travel pickled: Arrow cannot hold arbitrary Python objects.
        results = [
            pickle.dumps(self.worker(pickle.loads(blob)), protocol=5) for blob in batch["unit"]
        ]
        return {"i": batch["i"], "result": np.array(results, dtype=object)}


def _retry_options() -> dict[str, Any]:
    # An actor that dies (out of memory, a crashed native library) is restarted and the task
    # it was running is retried; an exception raised by the worker is an answer, not retried.
    return {"max_restarts": RETRIES, "max_task_retries": RETRIES}


class RayEngine(BatchEngine[Any, Any]):
    name = "ray"
    in_process = False

    def __init__(
        self, *, actors: int | None = None, cpus_per_actor: float = CPUS_PER_ACTOR
    ) -> None:
        self.actors = actors
        self.cpus_per_actor = cpus_per_actor
        self._started = False

    def start(self) -> None:
        """Start (or join) Ray now rather than on the first `map`: a benchmark times it apart."""
        self._ensure_ray()

    def _ensure_ray(self) -> None:
        # Ray Data logs each dataset's plan at INFO; the CLI keeps stderr for its own messages.
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        if ray.is_initialized():
            return
        if os.environ.get("RAY_ADDRESS"):
            ray.init(logging_level=logging.WARNING)  # joins the cluster RAY_ADDRESS names
        else:
            ray.init(
                num_cpus=os.cpu_count() or 1,
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
        self._started = True

    def pool_size(self) -> int:
        """Actors: one per CPU of the cluster unless told otherwise."""
        if self.actors:
            return self.actors
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

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
        self._ensure_ray()
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False  # the caller's bar reports progress, as locally
        rows = [{"i": i, "unit": pickle.dumps(u, protocol=5)} for i, u in enumerate(units)]
        actors = min(self.pool_size(), len(rows))
        ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            _UnitRunner,
            fn_constructor_kwargs={"spec": spec},
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=self.cpus_per_actor,
            ray_remote_args_fn=_retry_options,
        )
        bar = progress(total=sum(sizes) if sizes is not None else len(units), desc=desc)
        try:
            for row in ds.iter_rows():
                i = int(row["i"])
                yield i, pickle.loads(row["result"])
                bar.update(sizes[i] if sizes is not None else 1)
        finally:
            bar.close()

    def close(self) -> None:
        if self._started and ray.is_initialized():
            ray.shutdown()
        self._started = False
