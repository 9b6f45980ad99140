"""The default policy taxonomy, shipped as data (`default_taxonomy.json`)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def default_taxonomy_json() -> dict[str, Any]:
    text = (
        resources.files("workbench.taxonomy").joinpath("default_taxonomy.json").read_text("utf-8")
    )
    data: dict[str, Any] = json.loads(text)
    return data
