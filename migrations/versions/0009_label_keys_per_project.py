"""labels: idempotency keys unique per project, not per database

Revision ID: 0009_label_keys_per_project
Revises: 0008_round_heartbeat
Create Date: 2026-12-02 10:00:00

The keys the workbench makes name rows of one installation (`lease:7`, `correct:12`), so a
label brought from another project or installation may carry the same key for a different
judgement; with one key per database, a reviewer's submission on lease 7 was answered with that
other label. UNIQUE(project_id, idempotency_key) replaces UNIQUE(idempotency_key); every lookup
by key names the project.

Going down puts the database-wide constraint back, which two projects sharing a key would break:
the downgrade then refuses, naming the keys, and changes nothing (no label is dropped or renamed).
On Postgres the append-only triggers of 0007 fire on UPDATE and DELETE only; swapping a
constraint changes no row. On SQLite the table is rebuilt (batch mode) with foreign keys off.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from workbench.errors import WorkbenchError

revision: str = "0009_label_keys_per_project"
down_revision: str | None = "0008_round_heartbeat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHOWN = 20  # shared keys named in the downgrade's refusal


def upgrade() -> None:
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_labels_idempotency_key"), type_="unique")
        batch_op.create_unique_constraint(
            op.f("uq_labels_project_id_idempotency_key"), ["project_id", "idempotency_key"]
        )


def _shared_keys() -> tuple[int, list[tuple[str, int]]]:
    """How many keys more than one project uses, and the first few with their project counts."""
    shared = (
        "SELECT idempotency_key, COUNT(DISTINCT project_id) AS projects FROM labels "
        "GROUP BY idempotency_key HAVING COUNT(DISTINCT project_id) > 1"
    )
    bind = op.get_bind()
    total = bind.execute(sa.text(f"SELECT COUNT(*) FROM ({shared}) AS s")).scalar_one()
    first = bind.execute(sa.text(f"{shared} ORDER BY idempotency_key LIMIT {SHOWN}")).all()
    return int(total), [(str(key), int(n)) for key, n in first]


def downgrade() -> None:
    total, first = _shared_keys()
    if total:
        shown = ", ".join(f"{key!r} ({n} projects)" for key, n in first)
        more = f" and {total - len(first)} more" if total > len(first) else ""
        raise WorkbenchError(
            f"cannot go back to one idempotency key per database: {total} key(s) are used in "
            f"more than one project ({shown}{more}); the older schema cannot hold them, and "
            "labels are never dropped or renamed to make room. Nothing was changed."
        )
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_labels_project_id_idempotency_key"), type_="unique")
        batch_op.create_unique_constraint(op.f("uq_labels_idempotency_key"), ["idempotency_key"])
