"""On Postgres the database itself keeps labels and audit events append-only (revision 0007)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from migration_rows import fill, snapshot
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from workbench.db import migrate
from workbench.db.engine import make_engine, make_sessionmaker
from workbench.db.models import AuditEvent, Label

BEFORE = "0006_queue_lease_order"
TRIGGERS = "0007_append_only_history"
CHANGES = {
    "UPDATE of labels": "UPDATE labels SET decision = 'not_violating' WHERE id = 1",
    "DELETE of labels": "DELETE FROM labels WHERE id = 4",
    "UPDATE of audit_events": "UPDATE audit_events SET actor = 'someone else' WHERE id = 1",
    "DELETE of audit_events": "DELETE FROM audit_events",
    "TRUNCATE of labels": "TRUNCATE labels CASCADE",
    "TRUNCATE of audit_events": "TRUNCATE audit_events",
}


@pytest.fixture
def filled(postgres_url: str) -> Iterator[Engine]:
    """A Postgres database with rows in every table, at the revision before the triggers."""
    engine = make_engine(postgres_url)
    for rev in [str(h["revision"]) for h in reversed(migrate.history(engine))]:
        if rev == TRIGGERS:
            break
        migrate.upgrade(engine, rev)
        with engine.begin() as conn:
            fill(conn, rev)
    assert migrate.current_revision(engine) == BEFORE
    yield engine
    engine.dispose()


def _refused(engine: Engine) -> dict[str, str]:
    """Each change tried in a transaction of its own (rolled back): the error, or '' if allowed."""
    out = {}
    for name, sql in CHANGES.items():
        with engine.connect() as conn:
            try:
                with conn.begin():
                    conn.execute(text(sql))
                    raise _Undo
            except _Undo:
                out[name] = ""
            except DBAPIError as exc:
                out[name] = str(exc.orig)
    return out


class _Undo(Exception):
    pass


@pytest.mark.postgres
def test_postgres_refuses_updating_or_deleting_committed_labels_and_audit_events(
    filled: Engine,
) -> None:
    assert _refused(filled) == dict.fromkeys(CHANGES, "")  # before the revision: allowed
    with filled.connect() as conn:
        rows = snapshot(conn)

    migrate.upgrade(filled, TRIGGERS)
    refused = _refused(filled)
    for name, error in refused.items():
        assert error.startswith(f"{name} is refused: committed rows"), (name, error)
    with filled.connect() as conn:
        assert snapshot(conn) == rows

    migrate.downgrade(filled, BEFORE)  # drops the triggers and their function
    assert _refused(filled) == dict.fromkeys(CHANGES, "")
    with filled.connect() as conn:
        assert snapshot(conn) == rows
        assert not conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).all()
    migrate.upgrade(filled)
    assert _refused(filled) == refused


@pytest.mark.postgres
def test_a_label_edited_through_the_orm_is_refused_with_a_message_that_says_why(
    filled: Engine,
) -> None:
    migrate.upgrade(filled)
    sessions = make_sessionmaker(filled)
    edit = pytest.raises(DBAPIError, match=r"UPDATE of labels is refused.*supersedes")
    with edit, sessions.begin() as s:
        s.get_one(Label, 2).rationale = "rewritten"
    with pytest.raises(DBAPIError, match=r"DELETE of labels is refused"), sessions.begin() as s:
        s.delete(s.get_one(Label, 4))
    with sessions() as s:
        assert s.get_one(Label, 2).rationale == "r"


@pytest.mark.postgres
def test_a_transaction_may_still_adjust_the_audit_event_it_has_just_written(
    filled: Engine,
) -> None:
    """Rows no other transaction has seen yet are not history: inserting and then fixing one in
    the same transaction (as tests backdate events) works; after the commit it is refused."""
    migrate.upgrade(filled)
    sessions = make_sessionmaker(filled)
    when = datetime(2025, 1, 1, tzinfo=UTC)
    with sessions.begin() as s:
        event = AuditEvent(id=100, actor="system", action="test.event", details={})
        s.add(event)
        s.flush()
        event.at = when
    with sessions() as s:
        assert s.get_one(AuditEvent, event.id).at == when
    refused = pytest.raises(DBAPIError, match="UPDATE of audit_events is refused")
    with refused, sessions.begin() as s:
        s.get_one(AuditEvent, event.id).at = datetime.now(UTC)
