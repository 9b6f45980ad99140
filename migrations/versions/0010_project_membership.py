"""project membership: who may open which project

Revision ID: 0010_project_membership
Revises: 0009_label_keys_per_project
Create Date: 2026-12-03 10:00:00

Roles were global: every reviewer could open every project and every lead export every
project's audit trail. `project_members` lists who may open a project (admins may open all).
The upgrade makes every enabled user a member of every existing project, so an upgraded
database behaves as before until an admin removes someone; `added_at` is the later of the
user's and the project's creation, so the backfill is the same whenever it runs. Going down
drops the table (and with it every membership decision made since).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import workbench.db.types

revision: str = "0010_project_membership"
down_revision: str | None = "0009_label_keys_per_project"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "project_members",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("added_at", workbench.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("added_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_members_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_project_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "user_id", name=op.f("pk_project_members")),
    )
    with op.batch_alter_table("project_members", schema=None) as batch_op:
        batch_op.create_index("ix_project_members_user", ["user_id"], unique=False)
    # Disabled accounts are left out: enabling one later is an admin's decision, and so is
    # giving it projects.
    op.execute(
        "INSERT INTO project_members (project_id, user_id, added_at, added_by) "
        "SELECT p.id, u.id, CASE WHEN p.created_at > u.created_at THEN p.created_at "
        "ELSE u.created_at END, 'migration' FROM projects p CROSS JOIN users u "
        "WHERE u.disabled = false"
    )


def downgrade() -> None:
    with op.batch_alter_table("project_members", schema=None) as batch_op:
        batch_op.drop_index("ix_project_members_user")
    op.drop_table("project_members")
