"""The workbench's tables, SQLAlchemy 2.0 typed. Each schema change is one Alembic revision."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from workbench.db.base import Base
from workbench.db.types import JSONType, UTCDateTime, utcnow

# SQLite only auto-increments INTEGER PRIMARY KEY; Postgres gets a 64-bit key for big tables.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Role(StrEnum):
    reviewer = "reviewer"
    lead = "lead"
    engineer = "engineer"
    admin = "admin"


class Decision(StrEnum):
    violating = "violating"
    not_violating = "not_violating"
    unsure = "unsure"  # escalate


class LabelSource(StrEnum):
    human = "human"  # made in the review UI
    import_ = "import"  # came from a file (another tool, an earlier export)
    propagated = "propagated"  # copied to a near-duplicate; never counted as a human judgement


class Modality(StrEnum):
    text = "text"
    image = "image"
    audio = "audio"
    video = "video"


def _enum(cls: type[StrEnum], name: str) -> Enum:
    # Stored as plain strings with a CHECK constraint: portable, and readable in SQL.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    # None: the user cannot log in (e.g. a reviewer known only from imported labels).
    password_hash: Mapped[str | None] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    # Validated by workbench.schemas.ProjectSettings; stored as JSON so later settings need no
    # schema change.
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    policy_versions: Mapped[list[PolicyVersion]] = relationship(
        back_populates="project", order_by="PolicyVersion.version"
    )


class PolicyVersion(Base):
    """One immutable version of a project's policy taxonomy."""

    __tablename__ = "policy_versions"
    __table_args__ = (UniqueConstraint("project_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    # sha256 of the canonical taxonomy JSON: loading the same taxonomy twice is a no-op.
    checksum: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))

    project: Mapped[Project] = relationship(back_populates="policy_versions")
    policies: Mapped[list[Policy]] = relationship(
        back_populates="policy_version", order_by="Policy.position", cascade="all, delete-orphan"
    )


class Policy(Base):
    """One policy code (e.g. `hate`) as written in one taxonomy version."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("policy_version_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_version_id: Mapped[int] = mapped_column(
        ForeignKey("policy_versions.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    guideline: Mapped[str] = mapped_column(Text)
    # [{"level": 1, "name": "low", "description": "..."}, ...]
    severity_scale: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    dsa_category: Mapped[str | None] = mapped_column(String(80))
    # The default enforcement of a violation: {"restriction": "removed", "ground":
    # "incompatible", "terms_clause": ..., "legal_ground": ..., "explanation": ...} (services/
    # report/decisions.py); None: the workbench's defaults.
    dsa_enforcement: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    policy_version: Mapped[PolicyVersion] = relationship(back_populates="policies")


class Item(Base):
    """One piece of content (a comment, an episode, a track) with up to one asset per modality."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("project_id", "external_id"),
        Index("ix_items_project_content_hash", "project_id", "content_hash"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(512))
    text: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(35))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    modalities: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # sha256 over text, language, metadata and asset hashes: decides "same content".
    content_hash: Mapped[str] = mapped_column(String(64))
    # The earliest item of the project with the same content (exact duplicate), if any.
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"))
    # Root item of its near-duplicate group (cosine or perceptual hash), if any.
    near_duplicate_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("items.id", ondelete="SET NULL")
    )
    # Bumped by `ingest --update` when the content changes, so derived data can be refreshed.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    source: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    assets: Mapped[list[MediaAsset]] = relationship(
        back_populates="item", cascade="all, delete-orphan", order_by="MediaAsset.modality"
    )


class MediaAsset(Base):
    """A media file of an item, stored content-addressed under WORKBENCH_HOME/media."""

    __tablename__ = "media_assets"
    __table_args__ = (
        UniqueConstraint("item_id", "modality"),
        Index("ix_media_assets_sha256", "sha256"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    modality: Mapped[Modality] = mapped_column(_enum(Modality, "modality"))
    sha256: Mapped[str] = mapped_column(String(64))
    mime_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    # Relative to the media store root, e.g. "ab/cd/abcd...ef.png".
    store_path: Mapped[str] = mapped_column(String(300))
    original_name: Mapped[str | None] = mapped_column(String(1024))
    # PDQ perceptual hash (hex) of images, for near-duplicate grouping; set when embedded.
    perceptual_hash: Mapped[str | None] = mapped_column(String(64))

    item: Mapped[Item] = relationship(back_populates="assets")


class Label(Base):
    """One judgement of one item by one reviewer. Append-only: a correction supersedes."""

    __tablename__ = "labels"
    __table_args__ = (
        Index("ix_labels_project_item", "project_id", "item_id"),
        Index("ix_labels_reviewer", "reviewer_id"),
        CheckConstraint("severity IS NULL OR (severity >= 1 AND severity <= 4)", name="severity"),
        # Per project, not per database: the keys the workbench makes (`lease:7`) count rows of
        # one installation, and another project's (or installation's) label may carry the same.
        UniqueConstraint("project_id", "idempotency_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    policy_version_id: Mapped[int] = mapped_column(ForeignKey("policy_versions.id"))
    decision: Mapped[Decision] = mapped_column(_enum(Decision, "decision"))
    policies: Mapped[list[str]] = mapped_column(JSONType, default=list)
    severity: Mapped[int | None] = mapped_column(Integer)
    rationale: Mapped[str | None] = mapped_column(Text)
    # Text: [{"start": 0, "end": 5}] (characters); audio/video: [{"start_s": 1.5, "end_s": 3.0}].
    spans: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    confidence: Mapped[float | None] = mapped_column(Float)
    time_spent_ms: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[LabelSource] = mapped_column(_enum(LabelSource, "label_source"))
    # A double click, a reconnect or a re-import with the same key never makes a second label.
    idempotency_key: Mapped[str] = mapped_column(String(200))
    # Unique: a label is corrected at most once; the chain of corrections stays linear.
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    reviewer: Mapped[User] = relationship()
    item: Mapped[Item] = relationship()
    policy_version: Mapped[PolicyVersion] = relationship()
    supersedes: Mapped[Label | None] = relationship(remote_side=[id])


class AuditEvent(Base):
    """Who did what, when: every write that matters records one, in the same transaction."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_project_at", "project_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))  # a user name, or "system" for the CLI
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(80))
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    entity_type: Mapped[str | None] = mapped_column(String(40))
    entity_id: Mapped[str | None] = mapped_column(String(512))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class EmbeddingStatus(StrEnum):
    ok = "ok"
    failed = "failed"  # undecodable or corrupt input; the reason is kept, the run goes on


class EmbeddingSpace(Base):
    """One vector space of a project: a modality slot (or `fused`) and the encoder filling it."""

    __tablename__ = "embedding_spaces"
    __table_args__ = (UniqueConstraint("project_id", "name", "encoder_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))  # text, image, audio, video, fused
    encoder_id: Mapped[str] = mapped_column(String(128))
    # The version the space's vectors are being brought to; rows of older versions get redone.
    encoder_version: Mapped[str] = mapped_column(String(200))
    dim: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Embedding(Base):
    """Which encoder version embedded which item revision, and where its vector lives.

    Vectors are kept in append-only segment files (numpy) under WORKBENCH_HOME, not in rows:
    a million 384-d vectors are 1.5 GB, which belongs in files and FAISS, not in a table.
    """

    __tablename__ = "embeddings"
    __table_args__ = (
        UniqueConstraint("space_id", "item_id"),
        Index("ix_embeddings_space_status", "space_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("embedding_spaces.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    item_revision: Mapped[int] = mapped_column(Integer)
    encoder_version: Mapped[str] = mapped_column(String(200))
    status: Mapped[EmbeddingStatus] = mapped_column(_enum(EmbeddingStatus, "embedding_status"))
    error: Mapped[str | None] = mapped_column(Text)
    segment: Mapped[str | None] = mapped_column(String(64))
    row: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RoundStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class ModelStatus(StrEnum):
    candidate = "candidate"  # trained, not (yet) in use
    champion = "champion"  # the version that scores the pool and drives selection
    retired = "retired"  # was champion once


class TrainingRound(Base):
    """A retrain request and its run by a worker: status, progress and log for the UI."""

    __tablename__ = "training_rounds"
    __table_args__ = (
        UniqueConstraint("project_id", "number"),
        Index("ix_training_rounds_status", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(32))  # manual, label_count, cli
    requested_by: Mapped[str] = mapped_column(String(128))
    status: Mapped[RoundStatus] = mapped_column(_enum(RoundStatus, "round_status"))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    log: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(128))
    labels_at_request: Mapped[int] = mapped_column(Integer, default=0)
    refill_queue: Mapped[bool] = mapped_column(Boolean, default=True)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL", use_alter=True)
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Stamped by the worker while it runs the round; a stale one means the worker died.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class ModelVersion(Base):
    """A trained classifier head: parameters, metrics, artifact and pool-score files."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("project_id", "version"),
        # At most one champion per project, refused by the database itself; promotion demotes
        # the old champion and promotes the new one in one transaction, demotion first.
        Index(
            "uq_model_versions_one_champion",
            "project_id",
            unique=True,
            sqlite_where=text("status = 'champion'"),
            postgresql_where=text("status = 'champion'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    round_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_rounds.id", ondelete="SET NULL")
    )
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    head: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    classes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    calibrated: Mapped[bool] = mapped_column(Boolean, default=False)
    calibration_note: Mapped[str | None] = mapped_column(Text)
    space_id: Mapped[int | None] = mapped_column(
        ForeignKey("embedding_spaces.id", ondelete="SET NULL")
    )
    trained_on: Mapped[int] = mapped_column(Integer, default=0)
    artifact_path: Mapped[str] = mapped_column(String(500))
    scores_path: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[ModelStatus] = mapped_column(_enum(ModelStatus, "model_status"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Per class: the operating threshold chosen on the validation split for a target precision.
    thresholds: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Labels snapshot hash, encoder and its version, head and parameters, code version.
    lineage: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The champion/challenger comparison made when this version was trained, and its verdict.
    comparison: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class EntryKind(StrEnum):
    selected = "selected"  # chosen by a selection strategy
    overlap = "overlap"  # a selected item that k reviewers label, for agreement
    gold = "gold"  # an item with a known answer, mixed in at the gold rate
    rereview = "rereview"  # sent back (suspected mislabel, adjudication)


class EntryStatus(StrEnum):
    pending = "pending"
    done = "done"
    cancelled = "cancelled"


class QueueEntry(Base):
    """An item waiting for review, with who chose it and why."""

    __tablename__ = "queue_entries"
    __table_args__ = (
        # "Is there an open gold entry?" (the gold check before every lease) without scanning
        # every pending entry of the project.
        Index("ix_queue_entries_project_kind_status", "project_id", "kind", "status"),
        # At most one open entry per item: a strategy never queues an item twice.
        Index(
            "uq_queue_entries_open_item",
            "item_id",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        CheckConstraint("active_leases >= 0", name="active_leases_nonneg"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    batch: Mapped[int] = mapped_column(Integer, default=0)  # selection batch number
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    kind: Mapped[EntryKind] = mapped_column(_enum(EntryKind, "entry_kind"))
    strategy: Mapped[str | None] = mapped_column(String(64))
    score: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    overlap_target: Mapped[int] = mapped_column(Integer, default=1)
    # Kept on the row so a lease is one guarded UPDATE (see services/queue.py).
    active_leases: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[EntryStatus] = mapped_column(_enum(EntryStatus, "entry_status"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Leasing walks this in its `ORDER BY priority DESC, id` order and stops at the first free entry:
# one short index range scan whatever the queue's length. (An ascending priority column can only
# give priority DESC with id DESC, so every lease sorted all of the project's pending entries.)
Index(
    "ix_queue_entries_lease_order",
    QueueEntry.project_id,
    QueueEntry.status,
    QueueEntry.priority.desc(),
    QueueEntry.id,
)


class LeaseStatus(StrEnum):
    active = "active"
    submitted = "submitted"
    released = "released"  # skipped or handed back by the reviewer
    expired = "expired"


class Lease(Base):
    """One reviewer's hold on one queue entry; an overlap entry has up to k of them."""

    __tablename__ = "leases"
    __table_args__ = (
        # One lease per reviewer and entry: an item never goes twice to the same reviewer.
        UniqueConstraint("entry_id", "reviewer_id"),
        Index("ix_leases_active_expiry", "status", "expires_at"),
        Index("ix_leases_reviewer_status", "reviewer_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("queue_entries.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[LeaseStatus] = mapped_column(_enum(LeaseStatus, "lease_status"))
    leased_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"))
    skip_reason: Mapped[str | None] = mapped_column(Text)


class UserSession(Base):
    """A logged-in browser session: only the sha256 of its token is stored, so a leaked table
    cannot be replayed. Logout or expiry ends it; the exposure counter is per session."""

    __tablename__ = "user_sessions"
    __table_args__ = (Index("ix_user_sessions_user", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(32), default="password")  # later: oidc
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Items reviewed in this session, for the optional exposure cap and its break reminder.
    items_reviewed: Mapped[int] = mapped_column(Integer, default=0)


class LoginAttempt(Base):
    """Every login attempt by user name (known or not): the throttle counts recent failures."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_name_at", "user_name", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_name: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    success: Mapped[bool] = mapped_column(Boolean)


class ReviewDraft(Base):
    """The label form as a reviewer left it, per reviewer and item, so a reload loses nothing.

    A draft with `supersedes_label_id` is an open correction (undo) of that label.
    """

    __tablename__ = "review_drafts"
    __table_args__ = (UniqueConstraint("reviewer_id", "item_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    lease_id: Mapped[int | None] = mapped_column(ForeignKey("leases.id", ondelete="SET NULL"))
    supersedes_label_id: Mapped[int | None] = mapped_column(
        ForeignKey("labels.id", ondelete="CASCADE")
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReviewerSettings(Base):
    """Wellbeing settings of one reviewer (defaults protect: blurred, greyscale, muted)."""

    __tablename__ = "reviewer_settings"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    blur_images: Mapped[bool] = mapped_column(Boolean, default=True)
    greyscale_images: Mapped[bool] = mapped_column(Boolean, default=True)
    # None: no cap. Otherwise a break reminder after this many items in one session.
    exposure_cap: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WellbeingFlag(Base):
    """A reviewer's "this affected me" on an item; leads see only the aggregate counts."""

    __tablename__ = "wellbeing_flags"
    __table_args__ = (
        UniqueConstraint("reviewer_id", "item_id"),
        Index("ix_wellbeing_flags_project", "project_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GoldItem(Base):
    """An item whose answer a lead knows: mixed into reviewers' queues to measure accuracy.

    One row per item; retiring keeps the row (its answers stay explainable in old reports),
    and marking it again brings it back with the answer given then.
    """

    __tablename__ = "gold_items"
    __table_args__ = (
        UniqueConstraint("project_id", "item_id"),
        CheckConstraint("severity IS NULL OR (severity >= 1 AND severity <= 4)", name="severity"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    policy_version_id: Mapped[int] = mapped_column(ForeignKey("policy_versions.id"))
    decision: Mapped[Decision] = mapped_column(_enum(Decision, "decision"))
    policies: Mapped[list[str]] = mapped_column(JSONType, default=list)
    severity: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retired_by: Mapped[str | None] = mapped_column(String(128))


class AdjudicationStatus(StrEnum):
    open = "open"
    resolved = "resolved"  # a lead recorded the final decision
    dismissed = "dismissed"  # a lead closed it without a decision (the crowd's label stands)


class AdjudicationReason(StrEnum):
    disagreement = "disagreement"  # counted labels differ on decision or primary policy
    low_alpha = "low_alpha"  # the item is in a slice whose Krippendorff's alpha is too low
    manual = "manual"  # a lead opened it


class Adjudication(Base):
    """A case for a lead: every label of an item side by side, then one final decision.

    The final decision of the latest resolved case is the item's training label.
    """

    __tablename__ = "adjudications"
    __table_args__ = (
        Index("ix_adjudications_project_status", "project_id", "status", "id"),
        Index("ix_adjudications_item", "item_id"),
        # At most one open case per item: refreshing the queue twice opens nothing new.
        Index(
            "uq_adjudications_open_item",
            "item_id",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        CheckConstraint("severity IS NULL OR (severity >= 1 AND severity <= 4)", name="severity"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    status: Mapped[AdjudicationStatus] = mapped_column(
        _enum(AdjudicationStatus, "adjudication_status")
    )
    reason: Mapped[AdjudicationReason] = mapped_column(
        _enum(AdjudicationReason, "adjudication_reason")
    )
    # Human-readable: which labels disagree, or which slice (e.g. "language=de, alpha 0.31").
    reason_detail: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The final decision (resolved only), checked against `policy_version_id`.
    decision: Mapped[Decision | None] = mapped_column(_enum(Decision, "decision"))
    policies: Mapped[list[str]] = mapped_column(JSONType, default=list)
    severity: Mapped[int | None] = mapped_column(Integer)
    policy_version_id: Mapped[int | None] = mapped_column(ForeignKey("policy_versions.id"))
    # Why the lead decided (resolved) or closed the case (dismissed); required for both.
    note: Mapped[str | None] = mapped_column(Text)
    closed_by: Mapped[str | None] = mapped_column(String(128))
    closed_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --- Project membership (0010) ---------------------------------------------------------------


class ProjectMember(Base):
    """A user who may open a project. Admins may open every project; everyone else only the
    projects they are members of (`services/membership.py` holds the rule)."""

    __tablename__ = "project_members"
    __table_args__ = (Index("ix_project_members_user", "user_id"),)

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who added the member: an admin's name, `system` (CLI) or `migration` (the 0010 backfill).
    added_by: Mapped[str] = mapped_column(String(128))


# Hash-match banks


class BankAction(StrEnum):
    block = "block"  # a match stops the upload
    review = "review"  # a match sends it to the review queue


class SignalType(StrEnum):
    pdq = "pdq"  # 256-bit perceptual hash of an image (Meta's PDQ)
    vpdq = "vpdq"  # one PDQ per sampled video frame (Meta's vPDQ)
    sha256 = "sha256"  # exact bytes of any file
    md5 = "md5"  # exact bytes, for lists that other tools share as MD5


class HashBank(Base):
    """A named list of known content (HMA's bank), shared by every project, with one action.

    `matching_enabled_ratio` rolls a new bank out to a fraction of subjects; `version` grows with
    every write to the bank or its contents, so each process can tell when its cached index is
    stale without reading the contents.
    """

    __tablename__ = "hash_banks"
    __table_args__ = (
        CheckConstraint(
            "matching_enabled_ratio >= 0 AND matching_enabled_ratio <= 1", name="enabled_ratio"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    action: Mapped[BankAction] = mapped_column(_enum(BankAction, "bank_action"))
    matching_enabled_ratio: Mapped[float] = mapped_column(Float, default=1.0)
    # Disabled with no end date stays off until enabled again.
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HashBankContent(Base):
    """One signal in a bank: a hash of a known file, with the id the bank's source gave it."""

    __tablename__ = "hash_bank_contents"
    __table_args__ = (
        UniqueConstraint("bank_id", "signal_type", "signal_key"),
        Index("ix_hash_bank_contents_signal", "signal_type", "signal_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("hash_banks.id", ondelete="CASCADE"))
    signal_type: Mapped[SignalType] = mapped_column(_enum(SignalType, "signal_type"))
    # Lower-case hex; a vPDQ signal is one line per frame, so it can be long.
    signal: Mapped[str] = mapped_column(Text)
    # The signal itself when it fits (PDQ, SHA-256, MD5), else its SHA-256: a btree index on
    # Postgres refuses keys over ~2.7 kB, and a long video's vPDQ signal is larger.
    signal_key: Mapped[str] = mapped_column(String(64))
    content_id: Mapped[str | None] = mapped_column(String(256))
    note: Mapped[str | None] = mapped_column(Text)
    # PDQ's quality score (0-100; below 50 PDQ's authors call the hash unreliable).
    quality: Mapped[int | None] = mapped_column(Integer)
    disabled_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Scan API


class ScanDecision(StrEnum):
    allow = "allow"
    review = "review"  # held for a person: the item is queued ahead of active-learning entries
    block = "block"


class ApiKey(Base):
    """A key for the HTTP API. Only the sha256 of the token is stored: tokens are 256 random
    bits, so a plain hash cannot be reversed, and a leaked table cannot be replayed."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Stamped at most once a minute (with an audit event), not on every request.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Scan(Base):
    """One scan decision (API or catalogue sweep): what, when, why, and how automated."""

    __tablename__ = "scans"
    __table_args__ = (Index("ix_scans_project_created", "project_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))  # api or sweep
    external_id: Mapped[str | None] = mapped_column(String(512))
    # What was scanned, without keeping it: sha256 over the text and each file's sha256.
    content_hash: Mapped[str | None] = mapped_column(String(64))
    # The item the scan is about: a swept item, or the item a review decision ingested.
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"))
    decision: Mapped[ScanDecision] = mapped_column(_enum(ScanDecision, "scan_decision"))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # For transparency reports (DSA art. 15/24): was the content found, and decided, by a machine?
    automated_detection: Mapped[bool] = mapped_column(Boolean)
    automated_decision: Mapped[bool] = mapped_column(Boolean)
    degraded: Mapped[bool] = mapped_column(Boolean, default=False)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    latency_ms: Mapped[float | None] = mapped_column(Float)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ScanSweep(Base):
    """A catalogue sweep of one project (`workbench scan`): its checkpoint, so a rerun resumes."""

    __tablename__ = "scan_sweeps"
    __table_args__ = (Index("ix_scan_sweeps_project", "project_id", "finished_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Items are swept in id order; every item up to this id is done.
    last_item_id: Mapped[int] = mapped_column(BigInteger, default=0)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# Enforcement decisions


class DecisionOrigin(StrEnum):
    label = "label"  # a reviewer's violating label
    adjudication = "adjudication"  # a lead's final decision on a case
    scan = "scan"  # an automated scan blocked the item
    lead = "lead"  # a lead recorded a decision by hand


class EnforcementDecision(Base):
    """One action taken on one item, as the EU DSA's statement of reasons describes it.

    Made once, when the action is taken, with a platform-unique id (`puid`) that never changes:
    the statement sent to the Transparency Database and any later complaint name it. A lead's
    override changes restriction or ground in place (audited, before and after); a reversal
    (appeal, correction, adjudication) sets `revoked_at`, the row stays.
    """

    __tablename__ = "enforcement_decisions"
    __table_args__ = (
        Index("ix_enforcement_decisions_project_applied", "project_id", "application_date"),
        Index("ix_enforcement_decisions_item", "item_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    puid: Mapped[str] = mapped_column(String(500), unique=True)
    origin: Mapped[DecisionOrigin] = mapped_column(_enum(DecisionOrigin, "decision_origin"))
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"))
    adjudication_id: Mapped[int | None] = mapped_column(
        ForeignKey("adjudications.id", ondelete="SET NULL")
    )
    # The scan's own reference (a match id, a hash list name): the scan code names it.
    scan_ref: Mapped[str | None] = mapped_column(String(200))
    decided_by: Mapped[str] = mapped_column(String(128))
    decided_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    policy_code: Mapped[str | None] = mapped_column(String(64))
    policy_version_id: Mapped[int | None] = mapped_column(ForeignKey("policy_versions.id"))
    # services/report/decisions.py RESTRICTIONS: removed, disabled, ..., account_terminated.
    restriction: Mapped[str] = mapped_column(String(40))
    restriction_other: Mapped[str | None] = mapped_column(Text)
    ground: Mapped[str] = mapped_column(String(16))  # "illegal" or "incompatible"
    legal_ground: Mapped[str | None] = mapped_column(Text)
    terms_clause: Mapped[str | None] = mapped_column(Text)
    ground_explanation: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(80))  # STATEMENT_CATEGORY_... without prefix
    content_types: Mapped[list[str]] = mapped_column(JSONType, default=list)
    content_date: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD
    application_date: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD
    territorial_scope: Mapped[list[str]] = mapped_column(JSONType, default=list)
    language: Mapped[str | None] = mapped_column(String(35))
    facts: Mapped[str] = mapped_column(Text)
    automated_detection: Mapped[bool] = mapped_column(Boolean)
    automated_decision: Mapped[str] = mapped_column(String(16))  # fully, partially, not
    source_type: Mapped[str] = mapped_column(String(32))  # voluntary, article_16, ...
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(Text)


class AppealStatus(StrEnum):
    open = "open"
    upheld = "upheld"
    reversed = "reversed"


class DecisionAppeal(Base):
    """A complaint against a decision (DSA art. 20): re-reviewed by someone who did not decide."""

    __tablename__ = "decision_appeals"
    __table_args__ = (Index("ix_decision_appeals_project_filed", "project_id", "filed_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    decision_id: Mapped[int] = mapped_column(
        ForeignKey("enforcement_decisions.id", ondelete="CASCADE")
    )
    complaint: Mapped[str] = mapped_column(Text)
    filed_by: Mapped[str] = mapped_column(String(128))
    filed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[AppealStatus] = mapped_column(_enum(AppealStatus, "appeal_status"))
    queue_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("queue_entries.id", ondelete="SET NULL")
    )
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(Text)


# Evaluation


class EvaluationSetKind(StrEnum):
    labels_file = "labels_file"  # made from a label file ("standard dataset" path)
    sample = "sample"  # a stratified random sample of the pool, reviewed with overlap


class EvaluationSetStatus(StrEnum):
    draft = "draft"
    sampling = "sampling"  # queued for review; freezes once every member has its final label
    frozen = "frozen"  # never changes again; a new version is a new set
    retired = "retired"  # kept for old reports, no longer used to compare models


class EvaluationSet(Base):
    """A versioned set of items with reference labels that models are evaluated on.

    Its members are never used for training, frozen or not.
    """

    __tablename__ = "evaluation_sets"
    __table_args__ = (UniqueConstraint("project_id", "name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer, default=1)
    kind: Mapped[EvaluationSetKind] = mapped_column(_enum(EvaluationSetKind, "evaluation_set_kind"))
    status: Mapped[EvaluationSetStatus] = mapped_column(
        _enum(EvaluationSetStatus, "evaluation_set_status")
    )
    # Where the set came from: the label file and its sha256, or the sample's n, overlap, seed.
    source: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    frozen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EvaluationMember(Base):
    """An item of an evaluation set, with its reference class once it has one."""

    __tablename__ = "evaluation_members"
    __table_args__ = (
        UniqueConstraint("set_id", "item_id"),
        # "Is this item in any evaluation set?" when a round picks its training items.
        Index("ix_evaluation_members_item", "item_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("evaluation_sets.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    # A training class (a policy code, or `none`); filled when the set freezes for a sample.
    reference: Mapped[str | None] = mapped_column(String(64))
    stratum: Mapped[str | None] = mapped_column(String(128))


# Prevalence samples


class PrevalencePlan(Base):
    """A stratified random sample of the pool drawn to measure one policy's prevalence.

    The strata are quantile buckets of the scoring model's score for the policy; `strata` keeps
    each one's score range, population N_h and allocation n_h, which the estimate weighs by.
    """

    __tablename__ = "prevalence_plans"
    __table_args__ = (Index("ix_prevalence_plans_project_policy", "project_id", "policy", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    policy: Mapped[str] = mapped_column(String(64))
    # The champion whose scores made the strata; recall is estimated for it, at `threshold`.
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    model_version: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[float] = mapped_column(Float)
    threshold_source: Mapped[str] = mapped_column(String(200))
    n_requested: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    population: Mapped[int] = mapped_column(Integer)
    # [{"stratum", "score_low", "score_high", "population", "mean_score", "prior_sd",
    #   "allocated"}], lowest scores first.
    strata: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PrevalenceSample(Base):
    """One sampled item of a prevalence plan: its stratum, inclusion probability and score."""

    __tablename__ = "prevalence_samples"
    __table_args__ = (
        UniqueConstraint("plan_id", "item_id"),
        Index("ix_prevalence_samples_item", "item_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("prevalence_plans.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    stratum: Mapped[int] = mapped_column(Integer)
    inclusion_probability: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
