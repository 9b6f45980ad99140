"""Find similar items: by an item's own vector, or by a text query where the encoder allows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.config import Settings
from workbench.db.models import Item, Project
from workbench.errors import NotFoundError, WorkbenchError
from workbench.services.vectors.spaces import (
    FUSED,
    default_encoder_lookup,
    get_space,
    load_space_vectors,
    refresh_index,
)


@dataclass
class Neighbour:
    external_id: str
    item_id: int
    score: float


def _text_query_vector(project: Project, space_name: str, text: str) -> tuple[str, np.ndarray]:
    """A text query lands in the text space, or in an image space whose encoder has a text
    tower (CLIP); the fused space is searched through its text part, i.e. the text space."""
    if space_name in (FUSED, "text"):
        enc = default_encoder_lookup("text", project)
        return "text", enc.encode([text])[0]
    enc = default_encoder_lookup(space_name, project)
    encode_text = getattr(enc, "encode_text", None)
    if encode_text is None:
        raise WorkbenchError(
            f"the {space_name} encoder {enc.id!r} cannot embed text queries; use --space text, "
            "or configure a CLIP-family image encoder"
        )
    return space_name, encode_text([text])[0]


def similar_items(
    session: Session,
    settings: Settings,
    project: Project,
    *,
    external_id: str | None = None,
    text: str | None = None,
    k: int = 10,
    space: str = FUSED,
) -> dict[str, Any]:
    if (external_id is None) == (text is None):
        raise WorkbenchError("give exactly one of --item EXTERNAL_ID or --text TEXT")
    if k < 1:
        raise WorkbenchError(f"-k must be at least 1, got {k}")
    query: dict[str, Any]
    exclude: int | None = None
    if external_id is not None:
        item = session.scalar(
            select(Item).where(Item.project_id == project.id, Item.external_id == external_id)
        )
        if item is None:
            raise NotFoundError(f"project {project.name!r} has no item {external_id!r}")
        sp = get_space(session, project, space)
        ids, vecs = load_space_vectors(session, settings, sp, [item.id])
        if len(ids) == 0:
            raise WorkbenchError(
                f"item {external_id!r} has no {space} vector (not embedded yet, or its embedding "
                "failed: see `workbench status`)"
            )
        qvec, exclude = vecs[0], item.id
        query = {"external_id": external_id, "item_id": item.id, "space": sp.name}
    else:
        assert text is not None
        space_name, qvec = _text_query_vector(project, space, text)
        sp = get_space(session, project, space_name)
        query = {"text": text, "space": sp.name}
    index = refresh_index(session, settings, sp)
    scores, found = index.search(np.asarray(qvec, dtype=np.float32)[None, :], k + 1)
    pairs = [
        (int(i), float(s))
        for i, s in zip(found[0], scores[0], strict=True)
        if i >= 0 and i != exclude
    ][:k]
    names = dict(
        session.execute(
            select(Item.id, Item.external_id).where(Item.id.in_([i for i, _ in pairs]))
        ).all()
    )
    neighbours = [Neighbour(external_id=names[i], item_id=i, score=round(s, 6)) for i, s in pairs]
    return {"query": query, "neighbours": [vars(n) for n in neighbours]}
