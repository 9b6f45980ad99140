"""Statements of reasons for the EU DSA Transparency Database, one per enforcement decision,
with the database's field names and values, each checked against `sor_rules` before any is
written: one invalid statement and nothing is written at all."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from workbench.db.models import EnforcementDecision, Project
from workbench.errors import Problem, WorkbenchError
from workbench.services.report import sor_rules
from workbench.services.report.decisions import (
    AUTOMATED_DECISIONS,
    CONTENT_TYPES,
    RESTRICTIONS,
    SOURCE_TYPES,
    decisions_between,
)


def content_language(language: str | None) -> str | None:
    """ISO 639-1 in upper case ("en-GB" -> "EN"); None when the item's language is not one."""
    if not language:
        return None
    code = language.split("-")[0].split("_")[0].upper()
    return code if code in sor_rules.LANGUAGE_CODES else None


def statement_of(row: EnforcementDecision) -> dict[str, Any]:
    """The statement of reasons of one decision, fields as the database names them."""
    target, value = RESTRICTIONS.get(row.restriction, ("decision_visibility", row.restriction))
    out: dict[str, Any] = {}
    if target == "decision_visibility":
        out["decision_visibility"] = [value]
        if value == "DECISION_VISIBILITY_OTHER":
            out["decision_visibility_other"] = row.restriction_other
    else:
        out[target] = value
        if value == "DECISION_MONETARY_OTHER":
            out["decision_monetary_other"] = row.restriction_other
    if row.ground == "illegal":
        out["decision_ground"] = "DECISION_GROUND_ILLEGAL_CONTENT"
        out["illegal_content_legal_ground"] = row.legal_ground
        out["illegal_content_explanation"] = row.ground_explanation
    else:
        out["decision_ground"] = "DECISION_GROUND_INCOMPATIBLE_CONTENT"
        out["incompatible_content_ground"] = row.terms_clause
        out["incompatible_content_explanation"] = row.ground_explanation
    out["content_type"] = [CONTENT_TYPES.get(t, t) for t in row.content_types]
    out["category"] = f"STATEMENT_CATEGORY_{row.category}"
    out["content_date"] = row.content_date
    out["application_date"] = row.application_date
    out["decision_facts"] = row.facts
    out["source_type"] = SOURCE_TYPES.get(row.source_type, row.source_type)
    out["automated_detection"] = "Yes" if row.automated_detection else "No"
    out["automated_decision"] = AUTOMATED_DECISIONS.get(
        row.automated_decision, row.automated_decision
    )
    out["territorial_scope"] = list(row.territorial_scope)
    language = content_language(row.language)
    if language is not None:
        out["content_language"] = language
    out["puid"] = row.puid
    return out


@dataclass
class StatementSet:
    """The statements of a period, and why each decision that cannot make one fails."""

    statements: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def build_statements(
    session: Session, project: Project, since: str | None = None, until: str | None = None
) -> StatementSet:
    """Every decision in force applied in [since, until], as a checked statement."""
    out = StatementSet()
    for row in decisions_between(session, project, since, until):
        if row.revoked_at is not None:
            continue  # reversed before it was sent: no action stands to report
        statement = statement_of(row)
        problems = sor_rules.validate_statement(statement)
        if problems:
            out.problems.extend(
                Problem(external_id=row.puid, field=p.field, reason=p.reason) for p in problems
            )
        else:
            out.statements.append(statement)
    return out


def _lines(statements: list[dict[str, Any]]) -> bytes:
    return "".join(
        json.dumps(s, ensure_ascii=False, sort_keys=True) + "\n" for s in statements
    ).encode()


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_statements(
    session: Session,
    project: Project,
    out: Path,
    *,
    since: str | None = None,
    until: str | None = None,
    batch_dir: Path | None = None,
) -> dict[str, Any]:
    """Write the period's statements as JSON lines to `out` (and, with `batch_dir`, files of at
    most 100 statements each, `{"statements": [...]}` as the multiple endpoint takes them).

    Raises WorkbenchError listing every invalid statement before anything is written.
    """
    built = build_statements(session, project, since, until)
    if built.problems:
        bad = len({p.external_id for p in built.problems})
        raise WorkbenchError(
            f"{bad} decision(s) cannot make a valid statement of reasons; nothing was written",
            built.problems,
        )
    batches: list[tuple[Path, bytes]] = []
    if batch_dir is not None:
        size = sor_rules.MAX_BATCH
        for n, start in enumerate(range(0, len(built.statements), size), start=1):
            body = {"statements": built.statements[start : start + size]}
            data = (json.dumps(body, ensure_ascii=False, sort_keys=True, indent=1) + "\n").encode()
            batches.append((batch_dir / f"statements-{n:05d}.json", data))
    write_atomic(out, _lines(built.statements))
    for path, data in batches:
        write_atomic(path, data)
    return {
        "project": project.name,
        "statements": len(built.statements),
        "out": str(out),
        "batches": [str(p) for p, _ in batches],
    }
