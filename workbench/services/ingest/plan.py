"""Plan an ingest against the database: which rows are new, changed, unchanged or refused.

An item's content is named by a hash over its canonical JSON; a row whose external_id is already
in the project with the same hash is left alone, with another hash it is an update (only with
`--update`). Exact duplicates across external_ids are marked by write.py after the insert,
because a group's earliest item may be one this run creates.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.db.models import Item
from workbench.errors import Problem
from workbench.services.ingest.read import ItemRow

# Ids per `IN (...)` query: one query per this many rows, not one per row.
QUERY_CHUNK = 500

_T = TypeVar("_T")


def item_content_hash(
    text: str | None, language: str | None, meta: dict[str, Any], assets: dict[str, str]
) -> str:
    """sha256 over canonical JSON of what makes an item's content: equal hash, same content."""
    payload = {"text": text, "language": language, "metadata": meta, "assets": assets}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def row_content_hash(row: ItemRow) -> str:
    assets = {m.info.modality.value: m.info.sha256 for m in row.media}
    return item_content_hash(row.text, row.language, row.meta, assets)


@dataclass(frozen=True)
class PlannedItem:
    """A row to write, with its content hash."""

    row: ItemRow
    content_hash: str


@dataclass
class IngestPlan:
    add: list[PlannedItem] = field(default_factory=list)
    update: dict[int, PlannedItem] = field(default_factory=dict)  # by the id of the item replaced
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)  # changed rows without allow_update


def chunks(values: Sequence[_T], size: int = QUERY_CHUNK) -> Iterator[Sequence[_T]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def plan_rows(
    session: Session,
    project_id: int | None,
    project: str,
    rows: list[ItemRow],
    allow_update: bool,
) -> IngestPlan:
    """Sort `rows` into new, changed and unchanged against project `project_id` (None: absent)."""
    plan = IngestPlan()
    existing: dict[str, tuple[int, str]] = {}
    if project_id is not None:
        ids = [r.external_id for r in rows]
        for chunk in chunks(ids):
            for item_id, ext_id, content_hash in session.execute(
                select(Item.id, Item.external_id, Item.content_hash).where(
                    Item.project_id == project_id, Item.external_id.in_(chunk)
                )
            ):
                existing[ext_id] = (item_id, content_hash)
    for row in rows:
        content_hash = row_content_hash(row)
        found = existing.get(row.external_id)
        if found is None:
            plan.add.append(PlannedItem(row, content_hash))
        elif found[1] == content_hash:
            plan.unchanged += 1
        elif allow_update:
            plan.update[found[0]] = PlannedItem(row, content_hash)
        else:
            plan.problems.append(
                Problem(
                    reason=(
                        f"already in project {project!r} with different content; "
                        "pass --update to replace it"
                    ),
                    line=row.line,
                    external_id=row.external_id,
                    field="external_id",
                    file=row.file,
                )
            )
    return plan
