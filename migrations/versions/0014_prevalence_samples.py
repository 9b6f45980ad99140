"""prevalence samples: stratified plans by model score and their sampled items

Revision ID: 0014_prevalence_samples
Revises: 0013_evaluation
Create Date: 2026-11-29 17:55:00

A prevalence plan stratifies the pool by the champion's score for one policy (quantile buckets),
allocates its sample by Neyman allocation and keeps each stratum's population and allocation;
each sampled item keeps its stratum, inclusion probability and score, which the estimate of
prevalence and of the champion's recall weighs by.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import workbench.db.types

revision: str = "0014_prevalence_samples"
down_revision: str | None = "0013_evaluation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "prevalence_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("policy", sa.String(length=64), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("threshold_source", sa.String(length=200), nullable=False),
        sa.Column("n_requested", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("population", sa.Integer(), nullable=False),
        sa.Column(
            "strata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", workbench.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_prevalence_plans_model_version_id_model_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_prevalence_plans_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prevalence_plans")),
    )
    with op.batch_alter_table("prevalence_plans", schema=None) as batch_op:
        batch_op.create_index(
            "ix_prevalence_plans_project_policy", ["project_id", "policy", "id"], unique=False
        )
    op.create_table(
        "prevalence_samples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("stratum", sa.Integer(), nullable=False),
        sa.Column("inclusion_probability", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["items.id"],
            name=op.f("fk_prevalence_samples_item_id_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["prevalence_plans.id"],
            name=op.f("fk_prevalence_samples_plan_id_prevalence_plans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prevalence_samples")),
        sa.UniqueConstraint(
            "plan_id", "item_id", name=op.f("uq_prevalence_samples_plan_id_item_id")
        ),
    )
    with op.batch_alter_table("prevalence_samples", schema=None) as batch_op:
        batch_op.create_index("ix_prevalence_samples_item", ["item_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("prevalence_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_prevalence_samples_item")
    op.drop_table("prevalence_samples")
    with op.batch_alter_table("prevalence_plans", schema=None) as batch_op:
        batch_op.drop_index("ix_prevalence_plans_project_policy")
    op.drop_table("prevalence_plans")
