"""hash-match banks: named lists of known content, shared by every project

Revision ID: 0011_hash_banks
Revises: 0010_project_membership
Create Date: 2026-11-29 17:40:22

A bank (HMA's word) holds signals of known files (PDQ, vPDQ, SHA-256, MD5) with an action for a
match (block or review) and a matching-enabled ratio for gradual roll-out. `signal_key` is the
signal itself when short, else its SHA-256, so the exact-hash lookup index stays within Postgres'
btree key limit for long vPDQ signals. New tables only; going down drops them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import workbench.db.types

revision: str = "0011_hash_banks"
down_revision: str | None = "0010_project_membership"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hash_banks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column(
            "action",
            sa.Enum(
                "block",
                "review",
                name="bank_action",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("matching_enabled_ratio", sa.Float(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_until", workbench.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", workbench.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", workbench.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "matching_enabled_ratio >= 0 AND matching_enabled_ratio <= 1",
            name=op.f("ck_hash_banks_enabled_ratio"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hash_banks")),
        sa.UniqueConstraint("name", name=op.f("uq_hash_banks_name")),
    )
    op.create_table(
        "hash_bank_contents",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("bank_id", sa.Integer(), nullable=False),
        sa.Column(
            "signal_type",
            sa.Enum(
                "pdq",
                "vpdq",
                "sha256",
                "md5",
                name="signal_type",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("signal", sa.Text(), nullable=False),
        sa.Column("signal_key", sa.String(length=64), nullable=False),
        sa.Column("content_id", sa.String(length=256), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("quality", sa.Integer(), nullable=True),
        sa.Column("disabled_until", workbench.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", workbench.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_id"],
            ["hash_banks.id"],
            name=op.f("fk_hash_bank_contents_bank_id_hash_banks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hash_bank_contents")),
        sa.UniqueConstraint(
            "bank_id",
            "signal_type",
            "signal_key",
            name=op.f("uq_hash_bank_contents_bank_id_signal_type_signal_key"),
        ),
    )
    with op.batch_alter_table("hash_bank_contents", schema=None) as batch_op:
        batch_op.create_index(
            "ix_hash_bank_contents_signal", ["signal_type", "signal_key"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("hash_bank_contents", schema=None) as batch_op:
        batch_op.drop_index("ix_hash_bank_contents_signal")

    op.drop_table("hash_bank_contents")
    op.drop_table("hash_banks")
