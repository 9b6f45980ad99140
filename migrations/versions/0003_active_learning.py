"""active learning: training rounds, model versions, queue entries, leases

Revision ID: 0003_active_learning
Revises: 0002_embeddings
Create Date: 2026-11-25 22:27:14.840536
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import workbench.db.types

revision: str = "0003_active_learning"
down_revision: str | None = "0002_embeddings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "training_rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "running",
                "succeeded",
                "failed",
                name="round_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=128), nullable=True),
        sa.Column("labels_at_request", sa.Integer(), nullable=False),
        sa.Column("refill_queue", sa.Boolean(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("created_at", workbench.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", workbench.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", workbench.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_training_rounds_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_rounds")),
        sa.UniqueConstraint(
            "project_id", "number", name=op.f("uq_training_rounds_project_id_number")
        ),
    )
    with op.batch_alter_table("training_rounds", schema=None) as batch_op:
        batch_op.create_index("ix_training_rounds_status", ["status", "id"], unique=False)

    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("head", sa.String(length=64), nullable=False),
        sa.Column(
            "params",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "classes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "metrics",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("calibrated", sa.Boolean(), nullable=False),
        sa.Column("calibration_note", sa.Text(), nullable=True),
        sa.Column("space_id", sa.Integer(), nullable=True),
        sa.Column("trained_on", sa.Integer(), nullable=False),
        sa.Column("artifact_path", sa.String(length=500), nullable=False),
        sa.Column("scores_path", sa.String(length=500), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "candidate",
                "champion",
                "retired",
                name="model_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("created_at", workbench.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["model_versions.id"],
            name=op.f("fk_model_versions_parent_id_model_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_model_versions_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["training_rounds.id"],
            name=op.f("fk_model_versions_round_id_training_rounds"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["space_id"],
            ["embedding_spaces.id"],
            name=op.f("fk_model_versions_space_id_embedding_spaces"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint(
            "project_id", "version", name=op.f("uq_model_versions_project_id_version")
        ),
    )
    # training_rounds <-> model_versions point at each other: the second FK comes after both
    # tables exist (Postgres checks the target at creation; batch mode rebuilds on SQLite).
    with op.batch_alter_table("training_rounds", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_training_rounds_model_version_id_model_versions"),
            "model_versions",
            ["model_version_id"],
            ["id"],
            ondelete="SET NULL",
        )

    op.create_table(
        "queue_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column(
            "kind",
            sa.Enum(
                "selected",
                "overlap",
                "gold",
                "rereview",
                name="entry_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("strategy", sa.String(length=64), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("overlap_target", sa.Integer(), nullable=False),
        sa.Column("active_leases", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "done",
                "cancelled",
                name="entry_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("created_at", workbench.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "active_leases >= 0", name=op.f("ck_queue_entries_active_leases_nonneg")
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["items.id"],
            name=op.f("fk_queue_entries_item_id_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_queue_entries_model_version_id_model_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_queue_entries_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_entries")),
    )
    with op.batch_alter_table("queue_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_queue_entries_next", ["project_id", "status", "priority", "id"], unique=False
        )
        batch_op.create_index(
            "uq_queue_entries_open_item",
            ["item_id"],
            unique=True,
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        )

    op.create_table(
        "leases",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "submitted",
                "released",
                "expired",
                name="lease_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("leased_at", workbench.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", workbench.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", workbench.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("label_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("skip_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["queue_entries.id"],
            name=op.f("fk_leases_entry_id_queue_entries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["label_id"], ["labels.id"], name=op.f("fk_leases_label_id_labels"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"], ["users.id"], name=op.f("fk_leases_reviewer_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leases")),
        sa.UniqueConstraint("entry_id", "reviewer_id", name=op.f("uq_leases_entry_id_reviewer_id")),
    )
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.create_index("ix_leases_active_expiry", ["status", "expires_at"], unique=False)
        batch_op.create_index("ix_leases_reviewer_status", ["reviewer_id", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.drop_index("ix_leases_reviewer_status")
        batch_op.drop_index("ix_leases_active_expiry")

    op.drop_table("leases")
    with op.batch_alter_table("queue_entries", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_queue_entries_open_item",
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        )
        batch_op.drop_index("ix_queue_entries_next")

    op.drop_table("queue_entries")
    with op.batch_alter_table("training_rounds", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_training_rounds_model_version_id_model_versions"), type_="foreignkey"
        )
    op.drop_table("model_versions")
    with op.batch_alter_table("training_rounds", schema=None) as batch_op:
        batch_op.drop_index("ix_training_rounds_status")

    op.drop_table("training_rounds")
