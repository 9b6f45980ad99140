"""Embed a project's items: per-modality vectors, a fused vector per item, FAISS indexes.

Incremental: an item is (re)embedded when it has no vector in a space yet, when its content
changed (`Item.revision`), or when the space's encoder has a new version. Resumable: each batch
writes its segment file, then commits its rows; a crash loses at most the batches in flight, and
the next run redoes exactly those. A corrupt or undecodable asset is recorded as a failure with
its reason on that item; the run goes on. The encoding runs on a batch engine (this process, or
Ray actors: workbench/engines/); the writing always happens here, the same for every engine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, selectinload

from workbench.config import Settings
from workbench.db.database import Database, open_database
from workbench.db.models import (
    Embedding,
    EmbeddingSpace,
    EmbeddingStatus,
    Item,
    MediaAsset,
    Modality,
    Project,
)
from workbench.db.types import utcnow
from workbench.encoders.base import Encoder
from workbench.encoders.fusion import FUSION_VERSION, fuse
from workbench.engines import BatchEngine, engine_scope
from workbench.progress import ProgressFactory, no_progress
from workbench.services.audit import Actor, record_event
from workbench.services.projects import get_project, project_settings
from workbench.services.vectors.near_duplicates import update_near_duplicates
from workbench.services.vectors.spaces import (
    FUSED,
    MODALITIES,
    collect_garbage,
    default_encoder_lookup,
    get_or_create_space,
    get_space,
    load_space_vectors,
    refresh_index,
    space_folder,
)
from workbench.services.vectors.vector_store import SegmentStore

EncoderLookup = Callable[[str, Project], Encoder]


@dataclass
class SpaceReport:
    encoder: str
    version: str
    embedded: int = 0
    failed: int = 0
    up_to_date: int = 0
    indexed: int = 0
    index_kind: str | None = None


@dataclass
class EmbedReport:
    project: str
    spaces: dict[str, SpaceReport] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    near_duplicate_items: int = 0
    # Items whose fused vector changed in this run: the near-duplicate pass queries only these.
    changed_item_ids: list[int] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.spaces.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "spaces": {k: vars(v) for k, v in self.spaces.items()},
            "embedded": sum(s.embedded for s in self.spaces.values()),
            "failed": self.failed,
            "failures": self.failures,
            "near_duplicate_items": self.near_duplicate_items,
        }


def _todo_query(project: Project, space: EmbeddingSpace, modality: str, retry_failed: bool):  # type: ignore[no-untyped-def]
    """Items of the modality whose vector is missing, stale, or (optionally) failed."""
    stale = or_(
        Embedding.id.is_(None),
        Embedding.encoder_version != space.encoder_version,
        Embedding.item_revision != Item.revision,
    )
    if retry_failed:
        stale = or_(stale, Embedding.status == EmbeddingStatus.failed)
    q = (
        select(Item.id)
        .outerjoin(Embedding, and_(Embedding.item_id == Item.id, Embedding.space_id == space.id))
        .where(Item.project_id == project.id, stale)
    )
    if modality == "text":
        # Batches of similar length: padding to the longest text of a batch is the main waste
        # of a transformer on short texts (measured: 188 -> see benchmarks/embed-text-*.json).
        return q.where(Item.text.is_not(None)).order_by(func.length(Item.text), Item.id)
    q = q.order_by(Item.id)
    return q.where(
        select(MediaAsset.id)
        .where(MediaAsset.item_id == Item.id, MediaAsset.modality == Modality(modality))
        .exists()
    )


def _inputs(items: Sequence[Item], modality: str, settings: Settings) -> list[Any]:
    if modality == "text":
        return [it.text or "" for it in items]
    out = []
    for it in items:
        asset = next(a for a in it.assets if a.modality.value == modality)
        out.append(settings.media_dir / asset.store_path)
    return out


def _encode_each(encoder: Encoder, inputs: list[Any]) -> list[np.ndarray | Exception]:
    """Encode a batch; if the batch fails, encode one by one so only bad inputs fail."""
    try:
        vecs = encoder.encode(inputs)
        return [np.asarray(v, dtype=np.float32) for v in vecs]
    except Exception:
        results: list[np.ndarray | Exception] = []
        for x in inputs:
            try:
                results.append(np.asarray(encoder.encode([x])[0], dtype=np.float32))
            except Exception as exc:
                results.append(exc)
        return results


def _upsert(
    session: Session,
    space: EmbeddingSpace,
    item_id: int,
    revision: int,
    *,
    status: EmbeddingStatus,
    segment: str | None,
    row: int | None,
    error: str | None,
    existing: dict[int, Embedding],
) -> None:
    emb = existing.get(item_id)
    if emb is None:
        emb = Embedding(space_id=space.id, item_id=item_id)
        session.add(emb)
    # The revision the encoder read: an item changed meanwhile stays stale and is redone.
    emb.item_revision = revision
    emb.encoder_version = space.encoder_version
    emb.status, emb.segment, emb.row, emb.error = status, segment, row, error
    emb.created_at = utcnow()


def _describe(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 500 else text[:497] + "..."


@dataclass
class EncodedBatch:
    """What a worker returns for one batch of item ids: per item, in id order, the revision it
    read and either a vector (rows of `vectors`, in order) or the reason it failed."""

    item_ids: list[int]
    revisions: list[int]
    external_ids: list[str]
    errors: list[str | None]
    vectors: np.ndarray


@dataclass
class EncoderLoader:
    """Loads a modality's encoder inside a worker process, through the same lookup as here.

    A project row does not travel between processes; a transient copy with its name and
    settings gives the lookup what it reads."""

    lookup: EncoderLookup
    modality: str
    project_name: str
    project_settings: dict[str, Any]

    def __call__(self) -> Encoder:
        return self.lookup(
            self.modality, Project(name=self.project_name, settings=self.project_settings)
        )


def _loaded(encoder: Encoder) -> Encoder:
    return encoder


@dataclass
class EmbedBatches:
    """The worker spec of the embedding step: read the items of a batch, encode them.

    In this process it uses the open database and the loaded encoder; elsewhere (a Ray actor)
    it opens the database from the settings and loads the encoder once."""

    settings: Settings
    modality: str
    load_encoder: Callable[[], Encoder]
    database: Database | None = None

    def __call__(self) -> Callable[[list[int]], EncodedBatch]:
        db = self.database or open_database(self.settings, check_schema=False)
        return partial(_encode_batch, db, self.settings, self.modality, self.load_encoder())


def _encode_batch(
    db: Database, settings: Settings, modality: str, encoder: Encoder, ids: list[int]
) -> EncodedBatch:
    with db.sessions() as s:
        items = list(
            s.scalars(
                select(Item)
                .where(Item.id.in_(ids))
                .order_by(Item.id)
                .options(selectinload(Item.assets))
            )
        )
        inputs = _inputs(items, modality, settings)
        item_ids = [it.id for it in items]
        revisions = [it.revision for it in items]
        external_ids = [it.external_id for it in items]
    results = _encode_each(encoder, inputs)
    good = [v for v in results if isinstance(v, np.ndarray)]
    return EncodedBatch(
        item_ids=item_ids,
        revisions=revisions,
        external_ids=external_ids,
        errors=[None if isinstance(v, np.ndarray) else _describe(v) for v in results],
        vectors=np.stack(good) if good else np.zeros((0, encoder.dim), dtype=np.float32),
    )


def _write_batch(
    db: Database,
    space_id: int,
    store: SegmentStore,
    batch: EncodedBatch,
    modality: str,
    rep: SpaceReport,
    report: EmbedReport,
) -> None:
    """One batch's segment file, then its rows, in one transaction: the same for every engine."""
    with db.sessions.begin() as s:
        space = s.get_one(EmbeddingSpace, space_id)
        segment = store.write(batch.vectors) if len(batch.vectors) else None
        existing = {
            e.item_id: e
            for e in s.scalars(
                select(Embedding).where(
                    Embedding.space_id == space_id, Embedding.item_id.in_(batch.item_ids)
                )
            )
        }
        row = 0
        for item_id, revision, external_id, error in zip(
            batch.item_ids, batch.revisions, batch.external_ids, batch.errors, strict=True
        ):
            if error is None:
                _upsert(
                    s, space, item_id, revision, status=EmbeddingStatus.ok,
                    segment=segment, row=row, error=None, existing=existing,
                )  # fmt: skip
                row += 1
                rep.embedded += 1
            else:
                _upsert(
                    s, space, item_id, revision, status=EmbeddingStatus.failed,
                    segment=None, row=None, error=error, existing=existing,
                )  # fmt: skip
                rep.failed += 1
                report.failures.append(
                    {"external_id": external_id, "space": modality, "reason": error}
                )


def embed_modality(
    db: Database,
    project_name: str,
    modality: str,
    encoder: Encoder,
    *,
    batch_size: int,
    retry_failed: bool,
    progress: ProgressFactory,
    report: EmbedReport,
    engine: BatchEngine,  # type: ignore[type-arg]
    encoder_lookup: EncoderLookup = default_encoder_lookup,
) -> None:
    settings = db.settings
    with db.sessions.begin() as s:
        project = get_project(s, project_name)
        space = get_or_create_space(s, project, modality, encoder.id, encoder.version, encoder.dim)
        todo = list(s.scalars(_todo_query(project, space, modality, retry_failed)))
        # Vectors this run keeps: the space's rows, less those of items it re-embeds (a new
        # item has no row yet, so it must not be subtracted).
        kept = (
            select(func.count())
            .select_from(Embedding)
            .where(
                Embedding.space_id == space.id,
                Embedding.item_id.not_in(
                    _todo_query(project, space, modality, retry_failed).order_by(None)
                ),
            )
        )
        up_to_date = s.scalar(kept) or 0
        space_id, project_id = space.id, project.id
        settings_json = dict(project.settings or {})
    rep = report.spaces.setdefault(modality, SpaceReport(encoder.id, encoder.version))
    rep.up_to_date = up_to_date
    store = SegmentStore(space_folder(settings, project_id, space_id))
    batches = [todo[start : start + batch_size] for start in range(0, len(todo), batch_size)]
    if engine.in_process:
        spec = EmbedBatches(settings, modality, partial(_loaded, encoder), database=db)
    else:
        loader = EncoderLoader(encoder_lookup, modality, project_name, settings_json)
        spec = EmbedBatches(settings, modality, loader)
    for _, batch in engine.map(
        batches, spec, sizes=[len(b) for b in batches], progress=progress, desc=f"embed {modality}"
    ):
        _write_batch(db, space_id, store, batch, modality, rep, report)


# ---- fused vectors -------------------------------------------------------------------------


def fused_version(components: dict[str, tuple[str, str, int]]) -> str:
    text = (
        FUSION_VERSION
        + "|"
        + "|".join(f"{m}={eid}@{ver}/{dim}" for m, (eid, ver, dim) in sorted(components.items()))
    )
    return "fused/" + hashlib.sha256(text.encode()).hexdigest()[:16]


def embed_fused(
    db: Database,
    project_name: str,
    report: EmbedReport,
    *,
    progress: ProgressFactory,
    batch_size: int = 4096,
) -> None:
    """One vector per item from its modality vectors (see workbench.encoders.fusion)."""
    settings = db.settings
    with db.sessions.begin() as s:
        project = get_project(s, project_name)
        spaces = {
            sp.name: sp
            for sp in s.scalars(
                select(EmbeddingSpace).where(
                    EmbeddingSpace.project_id == project.id, EmbeddingSpace.name != FUSED
                )
            )
            if sp.name in report.spaces  # the spaces of the encoders configured now
            and report.spaces[sp.name].encoder == sp.encoder_id
        }
        if not spaces:
            return
        layout = {m: spaces[m].dim for m in MODALITIES if m in spaces}
        version = fused_version(
            {m: (spaces[m].encoder_id, spaces[m].encoder_version, spaces[m].dim) for m in layout}
        )
        dim = sum(layout.values())
        fspace = get_or_create_space(s, project, FUSED, "fusion", version, dim)
        # Stale when missing, older version, older item revision, or older than a component.
        newest_component = (
            select(func.max(Embedding.created_at))
            .where(
                Embedding.item_id == Item.id,
                Embedding.space_id.in_([sp.id for sp in spaces.values()]),
                Embedding.status == EmbeddingStatus.ok,
            )
            .scalar_subquery()
        )
        fe = Embedding.__table__.alias("fe")
        todo = list(
            s.scalars(
                select(Item.id)
                .outerjoin(fe, and_(fe.c.item_id == Item.id, fe.c.space_id == fspace.id))
                .where(
                    Item.project_id == project.id,
                    newest_component.is_not(None),
                    or_(
                        fe.c.id.is_(None),
                        fe.c.encoder_version != version,
                        fe.c.item_revision != Item.revision,
                        fe.c.created_at < newest_component,
                    ),
                )
                .order_by(Item.id)
            )
        )
        fspace_id = fspace.id
        space_ids = {m: spaces[m].id for m in layout}
    rep = report.spaces.setdefault(FUSED, SpaceReport("fusion", version))
    store = SegmentStore(space_folder(settings, project.id, fspace_id))
    bar = progress(total=len(todo), desc="fuse")
    try:
        for start in range(0, len(todo), batch_size):
            ids = todo[start : start + batch_size]
            with db.sessions.begin() as s:
                fspace = s.get_one(EmbeddingSpace, fspace_id)
                parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
                for m, sid in space_ids.items():
                    parts[m] = load_space_vectors(s, settings, s.get_one(EmbeddingSpace, sid), ids)
                id_arr = np.asarray(ids, dtype=np.int64)
                per_modality: dict[str, np.ndarray | None] = {}
                present: dict[str, np.ndarray] = {}
                for m, (mids, mvecs) in parts.items():
                    full = np.zeros((len(ids), layout[m]), dtype=np.float32)
                    mask = np.zeros(len(ids), dtype=bool)
                    pos = np.searchsorted(id_arr, mids)
                    full[pos] = mvecs
                    mask[pos] = True
                    per_modality[m] = full
                    present[m] = mask
                fused = fuse(per_modality, present, layout)
                segment = store.write(fused)
                items = {it.id: it for it in s.scalars(select(Item).where(Item.id.in_(ids)))}
                existing = {
                    e.item_id: e
                    for e in s.scalars(
                        select(Embedding).where(
                            Embedding.space_id == fspace_id, Embedding.item_id.in_(ids)
                        )
                    )
                }
                for row, iid in enumerate(ids):
                    _upsert(
                        s,
                        fspace,
                        iid,
                        items[iid].revision,
                        status=EmbeddingStatus.ok,
                        segment=segment,
                        row=row,
                        error=None,
                        existing=existing,
                    )
                rep.embedded += len(ids)
                report.changed_item_ids.extend(ids)
            bar.update(len(ids))
    finally:
        bar.close()


# ---- the whole run -------------------------------------------------------------------------


def embed_project(
    db: Database,
    project_name: str,
    actor: Actor,
    *,
    batch_size: int = 128,
    retry_failed: bool = False,
    modalities: Sequence[str] | None = None,
    encoder_lookup: EncoderLookup = default_encoder_lookup,
    progress: ProgressFactory = no_progress,
    engine: BatchEngine | str | None = None,  # type: ignore[type-arg]
) -> EmbedReport:
    """Embed what is missing or stale, fuse, refresh the indexes. `engine` runs the encoders:
    an engine, `local` or `ray`; None means the project's `engine` setting."""
    with db.sessions() as s:
        project = get_project(s, project_name)
        present = _present_modalities(s, project)
        default_engine = project_settings(project).engine
        # Segments left by a crashed run: nobody points at them.
        for sp in s.scalars(select(EmbeddingSpace).where(EmbeddingSpace.project_id == project.id)):
            collect_garbage(s, db.settings, sp)
    report = EmbedReport(project=project_name)
    with engine_scope(engine, default_engine) as batch_engine:
        for modality in MODALITIES:
            if modality not in present or (modalities and modality not in modalities):
                continue
            encoder = encoder_lookup(modality, project)
            embed_modality(
                db,
                project_name,
                modality,
                encoder,
                batch_size=batch_size,
                retry_failed=retry_failed,
                progress=progress,
                report=report,
                engine=batch_engine,
                encoder_lookup=encoder_lookup,
            )
    embed_fused(db, project_name, report, progress=progress)
    with db.sessions.begin() as s:
        project = get_project(s, project_name)
        for name, rep in report.spaces.items():
            sp = get_space(s, project, name)
            index = refresh_index(s, db.settings, sp)
            rep.indexed, rep.index_kind = index.count, index.meta.kind
            collect_garbage(s, db.settings, sp)
        report.near_duplicate_items = update_near_duplicates(
            s, db.settings, project, report.changed_item_ids
        )
        record_event(
            s,
            actor,
            "embed.run",
            project_id=project.id,
            entity_type="project",
            entity_id=project.name,
            details=report.as_dict() | {"failures": len(report.failures)},
        )
    return report


def _present_modalities(session: Session, project: Project) -> set[str]:
    present = set()
    if session.scalar(
        select(Item.id).where(Item.project_id == project.id, Item.text.is_not(None)).limit(1)
    ):
        present.add("text")
    for (m,) in session.execute(
        select(MediaAsset.modality).join(Item).where(Item.project_id == project.id).distinct()
    ):
        present.add(m.value)
    return present
