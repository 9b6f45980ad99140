"""The `--engine` option shared by the commands whose batch work can run on Ray."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


class EngineName(StrEnum):
    local = "local"
    ray = "ray"


EngineOpt = Annotated[
    EngineName | None,
    typer.Option(
        "--engine",
        help="Where the batch work runs: local (this process) or ray (RAY_ADDRESS names a "
        "cluster, else a local Ray starts). Default: the project's `engine` setting.",
    ),
]
