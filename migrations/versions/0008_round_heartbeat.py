"""training rounds: a worker heartbeat and an attempt count; one champion per project

Revision ID: 0008_round_heartbeat
Revises: 0007_append_only_history
Create Date: 2026-12-01 10:00:00

A worker killed mid-round left it `running` for six hours, and every later request got that
round back. The running worker now stamps `heartbeat_at` every few seconds; a round whose
heartbeat is several beats old is reclaimed by the next worker (`attempts` counts the tries, so
a round that kills its worker every time fails instead of looping). A partial unique index lets
the database refuse a second champion model version in a project; should an old database hold
two, the older ones are retired first (the newest stays champion, as the services would read it).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import workbench.db.types

revision: str = "0008_round_heartbeat"
down_revision: str | None = "0007_append_only_history"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHAMPION = sa.text("status = 'champion'")


def upgrade() -> None:
    with op.batch_alter_table("training_rounds", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("heartbeat_at", workbench.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
    # Rounds that already ran were tried once; a queued one not yet.
    op.execute("UPDATE training_rounds SET attempts = 1 WHERE started_at IS NOT NULL")
    op.execute(
        "UPDATE model_versions SET status = 'retired' WHERE status = 'champion' AND EXISTS ("
        "SELECT 1 FROM model_versions newer WHERE newer.project_id = model_versions.project_id "
        "AND newer.status = 'champion' AND newer.version > model_versions.version)"
    )
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.create_index(
            "uq_model_versions_one_champion",
            ["project_id"],
            unique=True,
            sqlite_where=CHAMPION,
            postgresql_where=CHAMPION,
        )


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_index("uq_model_versions_one_champion")
    with op.batch_alter_table("training_rounds", schema=None) as batch_op:
        batch_op.drop_column("attempts")
        batch_op.drop_column("heartbeat_at")
