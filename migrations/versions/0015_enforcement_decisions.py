"""enforcement decisions and their appeals (EU DSA statements of reasons); policy defaults

Revision ID: 0015_enforcement_decisions
Revises: 0014_prevalence_samples
Create Date: 2026-11-29 17:41:40

A decision row per action taken on an item (from a violating label, an adjudication, a scan's
block or a lead), with a platform-unique id that the statement of reasons and any complaint
name; appeals against decisions with their outcome and times; and each policy's default
restriction and ground (`policies.dsa_enforcement`). New tables and a nullable column only:
going down drops them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import workbench.db.types

revision: str = "0015_enforcement_decisions"
down_revision: str | None = "0014_prevalence_samples"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "enforcement_decisions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("puid", sa.String(length=500), nullable=False),
        sa.Column(
            "origin",
            sa.Enum(
                "label",
                "adjudication",
                "scan",
                "lead",
                name="decision_origin",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("label_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "adjudication_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("scan_ref", sa.String(length=200), nullable=True),
        sa.Column("decided_by", sa.String(length=128), nullable=False),
        sa.Column("decided_by_user_id", sa.Integer(), nullable=True),
        sa.Column("policy_code", sa.String(length=64), nullable=True),
        sa.Column("policy_version_id", sa.Integer(), nullable=True),
        sa.Column("restriction", sa.String(length=40), nullable=False),
        sa.Column("restriction_other", sa.Text(), nullable=True),
        sa.Column("ground", sa.String(length=16), nullable=False),
        sa.Column("legal_ground", sa.Text(), nullable=True),
        sa.Column("terms_clause", sa.Text(), nullable=True),
        sa.Column("ground_explanation", sa.Text(), nullable=True),
        sa.Column("category", sa.String(length=80), nullable=False),
        sa.Column(
            "content_types",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("content_date", sa.String(length=10), nullable=False),
        sa.Column("application_date", sa.String(length=10), nullable=False),
        sa.Column(
            "territorial_scope",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("language", sa.String(length=35), nullable=True),
        sa.Column("facts", sa.Text(), nullable=False),
        sa.Column("automated_detection", sa.Boolean(), nullable=False),
        sa.Column("automated_decision", sa.String(length=16), nullable=False),
        sa.Column("source_type", sa.String(length=32), nullable=False),
        sa.Column("created_at", workbench.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", workbench.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["adjudication_id"],
            ["adjudications.id"],
            name=op.f("fk_enforcement_decisions_adjudication_id_adjudications"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_user_id"],
            ["users.id"],
            name=op.f("fk_enforcement_decisions_decided_by_user_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["items.id"],
            name=op.f("fk_enforcement_decisions_item_id_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["label_id"],
            ["labels.id"],
            name=op.f("fk_enforcement_decisions_label_id_labels"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["policy_version_id"],
            ["policy_versions.id"],
            name=op.f("fk_enforcement_decisions_policy_version_id_policy_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_enforcement_decisions_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enforcement_decisions")),
        sa.UniqueConstraint("puid", name=op.f("uq_enforcement_decisions_puid")),
    )
    with op.batch_alter_table("enforcement_decisions", schema=None) as batch_op:
        batch_op.create_index("ix_enforcement_decisions_item", ["item_id"], unique=False)
        batch_op.create_index(
            "ix_enforcement_decisions_project_applied",
            ["project_id", "application_date"],
            unique=False,
        )

    op.create_table(
        "decision_appeals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column(
            "decision_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("complaint", sa.Text(), nullable=False),
        sa.Column("filed_by", sa.String(length=128), nullable=False),
        sa.Column("filed_at", workbench.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "upheld",
                "reversed",
                name="appeal_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "queue_entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("decided_at", workbench.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("decided_by_user_id", sa.Integer(), nullable=True),
        sa.Column("label_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["decided_by_user_id"],
            ["users.id"],
            name=op.f("fk_decision_appeals_decided_by_user_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["enforcement_decisions.id"],
            name=op.f("fk_decision_appeals_decision_id_enforcement_decisions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["label_id"],
            ["labels.id"],
            name=op.f("fk_decision_appeals_label_id_labels"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_decision_appeals_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["queue_entry_id"],
            ["queue_entries.id"],
            name=op.f("fk_decision_appeals_queue_entry_id_queue_entries"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decision_appeals")),
    )
    with op.batch_alter_table("decision_appeals", schema=None) as batch_op:
        batch_op.create_index(
            "ix_decision_appeals_project_filed", ["project_id", "filed_at"], unique=False
        )

    with op.batch_alter_table("policies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "dsa_enforcement",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("policies", schema=None) as batch_op:
        batch_op.drop_column("dsa_enforcement")

    with op.batch_alter_table("decision_appeals", schema=None) as batch_op:
        batch_op.drop_index("ix_decision_appeals_project_filed")

    op.drop_table("decision_appeals")
    with op.batch_alter_table("enforcement_decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_enforcement_decisions_project_applied")
        batch_op.drop_index("ix_enforcement_decisions_item")

    op.drop_table("enforcement_decisions")
