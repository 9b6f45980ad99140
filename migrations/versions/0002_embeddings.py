"""embeddings: spaces, per-item records, near-duplicate and perceptual hash columns

Revision ID: 0002_embeddings
Revises: 0001_foundation
Create Date: 2026-11-25 22:23:58.169069
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import workbench.db.types

revision: str = "0002_embeddings"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "embedding_spaces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("encoder_id", sa.String(length=128), nullable=False),
        sa.Column("encoder_version", sa.String(length=200), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("created_at", workbench.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_embedding_spaces_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_embedding_spaces")),
        sa.UniqueConstraint(
            "project_id",
            "name",
            "encoder_id",
            name=op.f("uq_embedding_spaces_project_id_name_encoder_id"),
        ),
    )
    op.create_table(
        "embeddings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("item_revision", sa.Integer(), nullable=False),
        sa.Column("encoder_version", sa.String(length=200), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "ok",
                "failed",
                name="embedding_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("segment", sa.String(length=64), nullable=True),
        sa.Column("row", sa.Integer(), nullable=True),
        sa.Column("created_at", workbench.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_embeddings_item_id_items"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["space_id"],
            ["embedding_spaces.id"],
            name=op.f("fk_embeddings_space_id_embedding_spaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_embeddings")),
        sa.UniqueConstraint("space_id", "item_id", name=op.f("uq_embeddings_space_id_item_id")),
    )
    with op.batch_alter_table("embeddings", schema=None) as batch_op:
        batch_op.create_index("ix_embeddings_space_status", ["space_id", "status"], unique=False)

    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "near_duplicate_of_id",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                nullable=True,
            )
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_items_near_duplicate_of_id_items"),
            "items",
            ["near_duplicate_of_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("media_assets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("perceptual_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("media_assets", schema=None) as batch_op:
        batch_op.drop_column("perceptual_hash")

    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_items_near_duplicate_of_id_items"), type_="foreignkey"
        )
        batch_op.drop_column("near_duplicate_of_id")

    with op.batch_alter_table("embeddings", schema=None) as batch_op:
        batch_op.drop_index("ix_embeddings_space_status")

    op.drop_table("embeddings")
    op.drop_table("embedding_spaces")
