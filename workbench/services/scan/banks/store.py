"""Banks and their contents: create, add, list, disable, and CSV import/export. Every write bumps
the bank's `version` (so cached indexes rebuild) and leaves an audit event."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workbench.config import IngestLimits
from workbench.db.models import BankAction, HashBank, HashBankContent, SignalType
from workbench.db.types import utcnow
from workbench.errors import NotFoundError, Problem, WorkbenchError
from workbench.services.audit import Actor, record_event
from workbench.services.ingest.media import probe_media, sniff_file
from workbench.services.scan.banks.signals import (
    Signal,
    SignalError,
    hashers_for,
    parse_signal,
    usable,
)

BANK_NAME = re.compile(r"^[A-Z0-9_]+$")
CSV_COLUMNS = ("signal_type", "signal", "content_id", "note")
CONTENT_ID_MAX = 256


@dataclass(frozen=True)
class BankSummary:
    """A bank as `bank list` shows it."""

    name: str
    action: str
    matching_enabled_ratio: float
    enabled: bool
    disabled_until: datetime | None
    signals: dict[str, int] = field(default_factory=dict)
    version: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action,
            "matching_enabled_ratio": self.matching_enabled_ratio,
            "enabled": self.enabled,
            "disabled_until": self.disabled_until.isoformat() if self.disabled_until else None,
            "signals": self.signals,
            "version": self.version,
        }


@dataclass(frozen=True)
class ImportResult:
    added: int
    already_present: int  # signals already in the bank (re-importing a list is harmless)


def check_bank_name(name: str) -> str:
    if not BANK_NAME.match(name):
        raise WorkbenchError(
            f"bank name {name!r} is not valid: use capital letters, digits and underscores "
            "(^[A-Z0-9_]+$), e.g. KNOWN_BAD_IMAGES"
        )
    return name


def _check_ratio(ratio: float) -> float:
    if not 0.0 <= ratio <= 1.0:
        raise WorkbenchError(f"matching_enabled_ratio must be between 0 and 1, got {ratio}")
    return float(ratio)


def _action(action: str) -> BankAction:
    try:
        return BankAction(action)
    except ValueError:
        raise WorkbenchError(f"bank action must be block or review, got {action!r}") from None


def get_bank(session: Session, name: str) -> HashBank:
    bank = session.scalar(select(HashBank).where(HashBank.name == name))
    if bank is None:
        raise NotFoundError(f"no bank named {name!r} (see `workbench bank list`)")
    return bank


def _touch(bank: HashBank) -> None:
    bank.version += 1
    bank.updated_at = utcnow()


def create_bank(
    session: Session, actor: Actor, name: str, action: str, ratio: float = 1.0
) -> HashBank:
    check_bank_name(name)
    bank_action, ratio = _action(action), _check_ratio(ratio)
    if session.scalar(select(HashBank.id).where(HashBank.name == name)) is not None:
        raise WorkbenchError(f"a bank named {name!r} already exists")
    bank = HashBank(
        name=name,
        action=bank_action,
        matching_enabled_ratio=ratio,
        disabled=False,
        version=1,
        created_by=actor.name,
    )
    session.add(bank)
    session.flush()
    record_event(
        session,
        actor,
        "bank.create",
        entity_type="hash_bank",
        entity_id=bank.id,
        details={"name": name, "action": bank_action.value, "matching_enabled_ratio": ratio},
    )
    return bank


def set_bank(
    session: Session,
    actor: Actor,
    name: str,
    *,
    action: str | None = None,
    ratio: float | None = None,
) -> HashBank:
    """Change a bank's action or roll-out ratio."""
    bank = get_bank(session, name)
    changes: dict[str, Any] = {}
    if action is not None:
        bank.action = _action(action)
        changes["action"] = bank.action.value
    if ratio is not None:
        bank.matching_enabled_ratio = _check_ratio(ratio)
        changes["matching_enabled_ratio"] = bank.matching_enabled_ratio
    _touch(bank)
    record_event(
        session, actor, "bank.update", entity_type="hash_bank", entity_id=bank.id, details=changes
    )
    return bank


def disable_bank(
    session: Session, actor: Actor, name: str, until: datetime | None = None
) -> HashBank:
    """Stop matching a bank, until a time or (no `until`) until it is enabled again."""
    bank = get_bank(session, name)
    if until is not None and until.tzinfo is None:
        raise WorkbenchError(f"--until {until.isoformat()} needs a time zone (e.g. +00:00)")
    bank.disabled, bank.disabled_until = True, until
    _touch(bank)
    record_event(
        session,
        actor,
        "bank.disable",
        entity_type="hash_bank",
        entity_id=bank.id,
        details={"until": until.isoformat() if until else None},
    )
    return bank


def enable_bank(session: Session, actor: Actor, name: str) -> HashBank:
    bank = get_bank(session, name)
    bank.disabled, bank.disabled_until = False, None
    _touch(bank)
    record_event(session, actor, "bank.enable", entity_type="hash_bank", entity_id=bank.id)
    return bank


def _check_content_id(content_id: str | None) -> str | None:
    if content_id is not None and len(content_id) > CONTENT_ID_MAX:
        raise WorkbenchError(f"content_id is longer than {CONTENT_ID_MAX} characters")
    return content_id or None


def _present_keys(session: Session, bank: HashBank) -> set[tuple[SignalType, str]]:
    rows = session.execute(
        select(HashBankContent.signal_type, HashBankContent.signal_key).where(
            HashBankContent.bank_id == bank.id
        )
    )
    return {(t, k) for t, k in rows}


def _content(
    bank: HashBank, actor: Actor, signal: Signal, content_id: str | None, note: str | None
) -> HashBankContent:
    return HashBankContent(
        bank_id=bank.id,
        signal_type=signal.signal_type,
        signal=signal.value,
        signal_key=signal.key,
        content_id=content_id,
        note=note or None,
        quality=signal.quality,
        created_by=actor.name,
    )


def add_file(
    session: Session,
    actor: Actor,
    name: str,
    data: bytes,
    media_type: str,
    *,
    content_id: str | None = None,
    note: str | None = None,
) -> list[HashBankContent]:
    """Add a file to a bank under every signal type that reads it (PDQ or vPDQ, SHA-256, MD5),
    as HMA hashes bank content with each applicable signal type (a PDQ of quality < 50 left
    out). Signals already in the bank are
    not added twice; if all are, the file is refused as a duplicate."""
    bank = get_bank(session, name)
    content_id = _check_content_id(content_id)
    # A PDQ hash too poor to match on (quality < 50) is not banked: it would only ever match
    # other featureless pictures. The exact hashes still bank the file.
    signals = [s for s in (h.hash_bytes(data) for h in hashers_for(media_type)) if usable(s)]
    present = _present_keys(session, bank)
    new = [s for s in signals if (s.signal_type, s.key) not in present]
    if not new:
        raise WorkbenchError(f"this file is already in bank {name!r}")
    rows = [_content(bank, actor, s, content_id, note) for s in new]
    session.add_all(rows)
    _touch(bank)
    session.flush()
    record_event(
        session,
        actor,
        "bank.add",
        entity_type="hash_bank",
        entity_id=bank.id,
        details={
            "content_id": content_id,
            "signals": {s.signal_type.value: s.value[:64] for s in new},
        },
    )
    return rows


def add_path(
    session: Session,
    actor: Actor,
    name: str,
    path: Path,
    *,
    content_id: str | None = None,
    note: str | None = None,
    limits: IngestLimits | None = None,
) -> list[HashBankContent]:
    """Add a file from disk: its type sniffed from its bytes; a supported image or video is first
    checked with the ingest limits (size, decompression bombs, duration), any other file is
    banked by its exact hashes only."""
    if not path.is_file():
        raise WorkbenchError(f"{path}: no such file")
    sniffed = sniff_file(path)
    if sniffed.media_type is None:
        media_type = "application/octet-stream"
        limits = limits or IngestLimits()
        if path.stat().st_size > limits.max_file_bytes:
            raise WorkbenchError(f"{path}: over the limit of {limits.max_file_bytes} bytes")
    else:
        media_type = probe_media(path, limits or IngestLimits()).mime_type
    try:
        return add_file(
            session, actor, name, path.read_bytes(), media_type, content_id=content_id, note=note
        )
    except SignalError as exc:
        raise SignalError(f"{path}: {exc.message}") from exc


def parse_until(text: str) -> datetime:
    """An ISO date or date-time for `disabled_until`; one without a zone is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise WorkbenchError(
            f"{text!r} is not a date: use ISO 8601, e.g. 2026-12-31 or 2026-12-31T18:00:00+01:00"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def add_signal(
    session: Session,
    actor: Actor,
    name: str,
    signal_type: str,
    signal: str,
    *,
    content_id: str | None = None,
    note: str | None = None,
) -> HashBankContent:
    """Add one signal string (a hash another tool computed) to a bank."""
    bank = get_bank(session, name)
    parsed = parse_signal(signal_type, signal)
    if (parsed.signal_type, parsed.key) in _present_keys(session, bank):
        raise WorkbenchError(f"this {parsed.signal_type.value} signal is already in bank {name!r}")
    row = _content(bank, actor, parsed, _check_content_id(content_id), note)
    session.add(row)
    _touch(bank)
    session.flush()
    record_event(
        session,
        actor,
        "bank.add",
        entity_type="hash_bank",
        entity_id=bank.id,
        details={
            "content_id": row.content_id,
            "signals": {parsed.signal_type.value: parsed.value[:64]},
        },
    )
    return row


def disable_content(
    session: Session, actor: Actor, name: str, content_id: str, until: datetime
) -> int:
    """Stop matching a bank's entries with this content_id until a time (e.g. a false positive
    under investigation). Returns how many signals were disabled."""
    bank = get_bank(session, name)
    rows = list(
        session.scalars(
            select(HashBankContent).where(
                HashBankContent.bank_id == bank.id, HashBankContent.content_id == content_id
            )
        )
    )
    if not rows:
        raise NotFoundError(f"bank {name!r} has no content with content_id {content_id!r}")
    for row in rows:
        row.disabled_until = until
    _touch(bank)
    record_event(
        session,
        actor,
        "bank.disable_content",
        entity_type="hash_bank",
        entity_id=bank.id,
        details={"content_id": content_id, "until": until.isoformat(), "signals": len(rows)},
    )
    return len(rows)


def list_banks(session: Session) -> list[BankSummary]:
    counts: dict[int, dict[str, int]] = {}
    for bank_id, signal_type, n in session.execute(
        select(HashBankContent.bank_id, HashBankContent.signal_type, func.count()).group_by(
            HashBankContent.bank_id, HashBankContent.signal_type
        )
    ):
        counts.setdefault(bank_id, {})[SignalType(signal_type).value] = n
    now = utcnow()
    out = []
    for bank in session.scalars(select(HashBank).order_by(HashBank.name)):
        enabled = not bank.disabled or (
            bank.disabled_until is not None and now >= bank.disabled_until
        )
        out.append(
            BankSummary(
                bank.name,
                bank.action.value,
                bank.matching_enabled_ratio,
                enabled,
                bank.disabled_until if bank.disabled else None,
                counts.get(bank.id, {}),
                bank.version,
            )
        )
    return out


def read_bank_csv(text: str, source: str) -> list[tuple[Signal, str | None, str | None]]:
    """Rows of a bank CSV (header `signal_type,signal,content_id,note`), every signal checked;
    a WorkbenchError listing every bad line (numbered as an editor numbers them)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header] != list(CSV_COLUMNS):
        raise WorkbenchError(
            f"{source}: the first line must be the header {','.join(CSV_COLUMNS)}",
            [Problem(reason=f"expected header {','.join(CSV_COLUMNS)}", line=1, file=source)],
        )
    rows: list[tuple[Signal, str | None, str | None]] = []
    problems: list[Problem] = []
    for record in reader:
        line = reader.line_num
        if not record or all(not f.strip() for f in record):
            continue
        if len(record) != len(CSV_COLUMNS):
            problems.append(
                Problem(f"expected {len(CSV_COLUMNS)} fields, got {len(record)}", line, file=source)
            )
            continue
        signal_type, signal, content_id, note = (f.strip() for f in record)
        try:
            parsed = parse_signal(signal_type, signal)
        except SignalError as exc:
            field_name = "signal_type" if "signal type" in exc.message else "signal"
            problems.append(Problem(exc.message, line, field=field_name, file=source))
            continue
        if len(content_id) > CONTENT_ID_MAX:
            problems.append(
                Problem(
                    f"longer than {CONTENT_ID_MAX} characters",
                    line,
                    field="content_id",
                    file=source,
                )
            )
            continue
        rows.append((parsed, content_id or None, note or None))
    if problems:
        raise WorkbenchError(
            f"{source}: {len(problems)} bad line(s); nothing was imported", problems
        )
    return rows


def import_csv(session: Session, actor: Actor, name: str, path: Path) -> ImportResult:
    """Add every signal of a bank CSV, or none if any line is bad. Signals already in the bank
    (or repeated in the file) are counted, not added twice."""
    bank = get_bank(session, name)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkbenchError(f"cannot read {path}: {exc}") from exc
    rows = read_bank_csv(text, str(path))
    present = _present_keys(session, bank)
    added: list[HashBankContent] = []
    for signal, content_id, note in rows:
        key = (signal.signal_type, signal.key)
        if key in present:
            continue
        present.add(key)
        added.append(_content(bank, actor, signal, content_id, note))
    session.add_all(added)
    _touch(bank)
    session.flush()
    by_type = Counter(r.signal_type.value for r in added)
    record_event(
        session,
        actor,
        "bank.import",
        entity_type="hash_bank",
        entity_id=bank.id,
        details={
            "file": path.name,
            "added": len(added),
            "already_present": len(rows) - len(added),
            "signals": dict(by_type),
        },
    )
    return ImportResult(len(added), len(rows) - len(added))


def export_csv(session: Session, actor: Actor, name: str, path: Path) -> int:
    """Write a bank's signals as CSV (the import format); returns the count. Audited: a bank's
    list of hashes says what a platform looks for."""
    bank = get_bank(session, name)
    rows = session.execute(
        select(
            HashBankContent.signal_type,
            HashBankContent.signal,
            HashBankContent.content_id,
            HashBankContent.note,
        )
        .where(HashBankContent.bank_id == bank.id)
        .order_by(HashBankContent.id)
    ).all()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for signal_type, signal, content_id, note in rows:
        writer.writerow([SignalType(signal_type).value, signal, content_id or "", note or ""])
    try:
        path.write_text(buffer.getvalue(), encoding="utf-8")
    except OSError as exc:
        raise WorkbenchError(f"cannot write {path}: {exc}") from exc
    record_event(
        session,
        actor,
        "bank.export",
        entity_type="hash_bank",
        entity_id=bank.id,
        details={"file": path.name, "signals": len(rows)},
    )
    return len(rows)
