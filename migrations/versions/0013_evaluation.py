"""evaluation: frozen, versioned evaluation sets; thresholds, lineage and comparison per model

Revision ID: 0013_evaluation
Revises: 0012_scan_api
Create Date: 2026-11-29 17:40:12

An evaluation set is a named, versioned list of items with reference classes (from a label file,
or a stratified sample reviewed with overlap); once frozen it never changes. Its members are kept
out of training, hence the index on item_id. A model version gains its operating thresholds
(chosen on the validation split), its lineage and the champion/challenger comparison made when
it was trained: nullable, as versions trained before this revision have none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import workbench.db.types

revision: str = "0013_evaluation"
down_revision: str | None = "0012_scan_api"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "evaluation_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "labels_file",
                "sample",
                name="evaluation_set_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "sampling",
                "frozen",
                "retired",
                name="evaluation_set_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "source",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", workbench.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("frozen_at", workbench.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("retired_at", workbench.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_evaluation_sets_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_sets")),
        sa.UniqueConstraint(
            "project_id", "name", "version", name=op.f("uq_evaluation_sets_project_id_name_version")
        ),
    )
    op.create_table(
        "evaluation_members",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.Column("stratum", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["items.id"],
            name=op.f("fk_evaluation_members_item_id_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["set_id"],
            ["evaluation_sets.id"],
            name=op.f("fk_evaluation_members_set_id_evaluation_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_members")),
        sa.UniqueConstraint("set_id", "item_id", name=op.f("uq_evaluation_members_set_id_item_id")),
    )
    with op.batch_alter_table("evaluation_members", schema=None) as batch_op:
        batch_op.create_index("ix_evaluation_members_item", ["item_id"], unique=False)

    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "thresholds",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column(
                "lineage",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column(
                "comparison",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("comparison")
        batch_op.drop_column("lineage")
        batch_op.drop_column("thresholds")

    with op.batch_alter_table("evaluation_members", schema=None) as batch_op:
        batch_op.drop_index("ix_evaluation_members_item")

    op.drop_table("evaluation_members")
    op.drop_table("evaluation_sets")
