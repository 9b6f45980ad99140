"""Near-duplicate groups: items whose fused vectors are nearly identical (cosine above the
project's threshold) or whose images share a PDQ perceptual hash within Hamming distance 31.

Each group is stored as `Item.near_duplicate_of_id` = the group's smallest item id, so selection
and review can collapse a group with one indexed column. Exact duplicates (same sha256 content)
are marked at ingest as `Item.duplicate_of_id` and join the same groups here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import faiss
import numpy as np
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from workbench.config import Settings
from workbench.db.models import Item, MediaAsset, Modality, Project
from workbench.errors import NotFoundError
from workbench.services.projects import project_settings
from workbench.services.vectors.spaces import FUSED, get_space, load_space_vectors, refresh_index

PDQ_MAX_DISTANCE = 31  # the threshold Meta's PDQ documentation recommends for matches
PDQ_MIN_QUALITY = 50  # below this, PDQ hashes of flat images match far too easily


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(x, x) != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller id becomes the root: the group's oldest item names it.
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            self.parent[hi] = lo
            self.parent.setdefault(lo, lo)


def pdq_hash(path: str) -> tuple[str, int]:
    """PDQ hash (64 hex chars) and quality (0-100) of an image file."""
    # Here, not at the top: only projects with images need pdqhash and Pillow.
    import pdqhash
    from PIL import Image

    with Image.open(path) as img:
        arr = np.asarray(img.convert("RGB"))
    bits, quality = pdqhash.compute(arr)
    packed = np.packbits(np.asarray(bits, dtype=np.uint8))
    return packed.tobytes().hex(), int(quality)


def _hash_missing_images(session: Session, settings: Settings, project: Project) -> None:
    assets = session.scalars(
        select(MediaAsset)
        .join(Item)
        .where(
            Item.project_id == project.id,
            MediaAsset.modality == Modality.image,
            MediaAsset.perceptual_hash.is_(None),
        )
    )
    for asset in assets:
        try:
            digest, quality = pdq_hash(str(settings.media_dir / asset.store_path))
        except Exception:
            continue  # an undecodable image is reported by the embedding run itself
        # Low-quality hashes (flat colour) are stored with a marker so they never match.
        asset.perceptual_hash = digest if quality >= PDQ_MIN_QUALITY else "low:" + digest[:59]


def _pdq_pairs(session: Session, project: Project) -> Iterable[tuple[int, int]]:
    rows = session.execute(
        select(MediaAsset.item_id, MediaAsset.perceptual_hash)
        .join(Item)
        .where(
            Item.project_id == project.id,
            MediaAsset.modality == Modality.image,
            MediaAsset.perceptual_hash.is_not(None),
        )
    ).all()
    hashed: list[tuple[int, str]] = [(iid, h) for iid, h in rows if h and not h.startswith("low:")]
    if len(hashed) < 2:
        return []
    codes = np.stack([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for _, h in hashed])
    index = faiss.IndexBinaryFlat(256)
    index.add(codes)
    lims, _dist, labels = index.range_search(codes, PDQ_MAX_DISTANCE + 1)
    ids = [iid for iid, _ in hashed]
    pairs = []
    for q in range(len(hashed)):
        for j in labels[lims[q] : lims[q + 1]]:
            if j != q:
                pairs.append((ids[q], ids[int(j)]))
    return pairs


def _vector_pairs(
    session: Session,
    settings: Settings,
    project: Project,
    query_ids: Sequence[int] | None,
    threshold: float,
) -> Iterable[tuple[int, int]]:
    try:
        space = get_space(session, project, FUSED)
    except NotFoundError:
        return []
    index = refresh_index(session, settings, space)
    ids, vecs = load_space_vectors(session, settings, space, query_ids)
    pairs = []
    for start in range(0, len(ids), 4096):
        scores, nbrs = index.search(vecs[start : start + 4096], 10)
        for qi, (row_s, row_n) in enumerate(zip(scores, nbrs, strict=True)):
            for sc, nb in zip(row_s, row_n, strict=True):
                if nb >= 0 and nb != ids[start + qi] and sc >= threshold:
                    pairs.append((int(ids[start + qi]), int(nb)))
    return pairs


def update_near_duplicates(
    session: Session, settings: Settings, project: Project, query_ids: Sequence[int] | None = None
) -> int:
    """Recompute groups; returns how many items belong to a group of two or more."""
    threshold = project_settings(project).near_duplicate_threshold
    _hash_missing_images(session, settings, project)
    session.flush()
    uf = UnionFind()
    # Existing groups and exact duplicates stay grouped.
    for iid, near, exact in session.execute(
        select(Item.id, Item.near_duplicate_of_id, Item.duplicate_of_id).where(
            Item.project_id == project.id
        )
    ):
        for other in (near, exact):
            if other is not None:
                uf.union(iid, other)
    for a, b in _pdq_pairs(session, project):
        uf.union(a, b)
    for a, b in _vector_pairs(session, settings, project, query_ids, threshold):
        uf.union(a, b)
    roots = {x: uf.find(x) for x in list(uf.parent)}
    # Only rows whose group root changes are written (Core update, not an ORM load per item).
    current = dict(
        session.execute(
            select(Item.id, Item.near_duplicate_of_id).where(
                Item.project_id == project.id,
                or_(Item.near_duplicate_of_id.is_not(None), Item.duplicate_of_id.is_not(None)),
            )
        ).all()
    )
    changes = []
    for iid in set(roots) | set(current):
        root = roots.get(iid)
        new = root if root is not None and root != iid else None
        if current.get(iid) != new:
            changes.append({"item_id": iid, "root": new})
    if changes:
        # Core executemany on the connection: the ORM would demand primary keys by name.
        session.connection().execute(
            update(Item)
            .where(Item.id == bindparam("item_id"))
            .values(near_duplicate_of_id=bindparam("root"))
            .execution_options(synchronize_session=False),
            changes,
        )
    return sum(1 for iid, r in roots.items() if r != iid) + len(
        {r for iid, r in roots.items() if r != iid}
    )
