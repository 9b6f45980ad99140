"""Progress reporting that services accept and interfaces render (tqdm on stderr for the CLI)."""

from __future__ import annotations

import sys
from typing import Any, Protocol


class ProgressBar(Protocol):
    def update(self, n: int = 1) -> Any: ...

    def close(self) -> Any: ...


class ProgressFactory(Protocol):
    def __call__(self, *, total: int | None, desc: str) -> ProgressBar: ...


class _NullBar:
    def update(self, n: int = 1) -> None:
        return None

    def close(self) -> None:
        return None


def no_progress(*, total: int | None, desc: str) -> ProgressBar:
    return _NullBar()


def stderr_progress(*, total: int | None, desc: str) -> ProgressBar:
    """A tqdm bar on stderr; silent when stderr is not a terminal (logs, CI, --json pipes)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        file=sys.stderr,
        disable=None,
        unit="it",
        dynamic_ncols=True,
        mininterval=0.5,
    )
