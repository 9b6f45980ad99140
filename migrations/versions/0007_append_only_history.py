"""labels and audit events: Postgres refuses to change or delete a committed row

Revision ID: 0007_append_only_history
Revises: 0006_queue_lease_order
Create Date: 2026-11-29 15:00:00

Labels are append-only (a correction is a new label that supersedes the old one) and audit
events are the record of who did what; the services never update or delete either. On Postgres,
which other programs and people can reach, triggers now make that a rule of the database: an
UPDATE, DELETE or TRUNCATE of a committed row fails with a message naming the table.

One exception: a transaction may still change rows it inserted itself at its top level (not
inside a savepoint), which nobody else can have seen yet; tests backdate the audit events they
have just written that way. Nothing deletes projects or items, whose ON DELETE CASCADE would now
fail too. A later migration that must rewrite these rows disables the triggers around that step.
SQLite is a file private to one workbench: no triggers there.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_append_only_history"
down_revision: str | None = "0006_queue_lease_order"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("labels", "audit_events")
FUNCTION = "workbench_refuse_history_change"

# xmin is the id of the transaction that inserted the row version; pg_current_xact_id() is the
# current top-level transaction's (it has one: it is writing). 2 (frozen) never matches.
CREATE_FUNCTION = f"""
CREATE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'TRUNCATE' AND OLD.xmin = pg_current_xact_id()::xid THEN
        RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION '% of % is refused: committed rows of this table are never changed '
        'or deleted (labels are corrected by a new label that supersedes the old one)',
        TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(CREATE_FUNCTION)
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {FUNCTION}()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    op.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
