"""queue: an index in leasing order, and one for the open-gold check

Revision ID: 0006_queue_lease_order
Revises: 0005_label_quality
Create Date: 2026-11-26 02:30:00

Leasing orders by `priority DESC, id`; the old (project_id, status, priority, id) index could
only give `priority DESC, id DESC`, so Postgres and SQLite sorted every pending entry of the
project on every lease (1.4 s per lease at a million entries). On a large Postgres table, build
the indexes with CREATE INDEX CONCURRENTLY by hand before upgrading if writes must not wait.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_queue_lease_order"
down_revision: str | None = "0005_label_quality"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("queue_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_queue_entries_lease_order",
            ["project_id", "status", sa.text("priority DESC"), "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_queue_entries_project_kind_status",
            ["project_id", "kind", "status"],
            unique=False,
        )
        batch_op.drop_index("ix_queue_entries_next")
    # Fresh statistics: without them SQLite guesses the new indexes are selective on project_id
    # alone and drives the lease lookups from queue_entries (240 ms at a million entries,
    # instead of 0.4 ms from leases).
    op.execute("ANALYZE queue_entries")


def downgrade() -> None:
    with op.batch_alter_table("queue_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_queue_entries_next", ["project_id", "status", "priority", "id"], unique=False
        )
        batch_op.drop_index("ix_queue_entries_project_kind_status")
        batch_op.drop_index("ix_queue_entries_lease_order")
