"""Gold checks: items whose answer a lead knows, mixed into reviewers' queues by their own path
(not by a selection strategy), and each reviewer's accuracy on them with a Wilson interval, a
weekly trend and an alert when it falls below the project's threshold.

How gold reaches a reviewer (see `queue.lease.lease_gold_if_due`): every gold item has one
queue entry of kind `gold` whose overlap target is effectively unlimited, so each reviewer can
get it once; the UNIQUE (entry, reviewer) lease constraint makes "never twice to one reviewer"
hold. A reviewer's leases are counted in blocks of `round(1 / gold_rate)`; in each block exactly one
lease is a gold item, at a position drawn from a hash of (project, reviewer, block). So the rate
is exact per block, the run is repeatable (no global random state), and a reviewer cannot tell
gold by counting items (it is not always the 50th).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from statsmodels.stats.proportion import proportion_confint

from workbench.db.models import (
    AuditEvent,
    Decision,
    EntryKind,
    EntryStatus,
    GoldItem,
    Item,
    LabelSource,
    PolicyVersion,
    Project,
    QueueEntry,
    Role,
)
from workbench.db.types import utcnow
from workbench.errors import NotFoundError, Problem, WorkbenchError
from workbench.services.audit import Actor, record_event
from workbench.services.ingest.tabular import Record, iter_records
from workbench.services.labels.validate import (
    ItemFacts,
    PolicyRules,
    check_label,
    parse_label_input,
)
from workbench.services.membership import require_project_role
from workbench.services.projects import project_settings
from workbench.services.quality.agreement import iso_week, load_counted_labels
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.taxonomy import current_policy_version

# Large enough that every reviewer of any project can get a gold item once; leasing checks
# `active_leases + completed < overlap_target`, so the entry never fills up and never turns
# `done`.
GOLD_OVERLAP_TARGET = 1_000_000
GOLD_COLUMNS = ("external_id", "decision", "policies", "severity", "note")
NO_VIOLATION = "none"
ALERT_RULE = (
    "alert when a reviewer has at least `gold_alert_min_answers` gold answers in the window "
    "and their decision accuracy (point estimate) is below `gold_alert_threshold`; the Wilson "
    "95% interval says how sure that is (`confident`: even its upper bound is below)"
)
ALERT_RAISED = "gold.alert_raised"
ALERT_CLEARED = "gold.alert_cleared"


# --- answers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A decision with its policy codes and severity: a gold answer or an adjudicated one."""

    decision: Decision
    policies: tuple[str, ...] = ()
    severity: int | None = None

    @property
    def training_class(self) -> str | None:
        """The class the classifier learns (as `train.label_class`): the first violation code,
        `none` for not violating, None (left out of training) for unsure."""
        return answer_class(self.decision, list(self.policies))

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision.value,
            "policies": list(self.policies),
            "severity": self.severity,
        }


def answer_class(decision: Decision | str, policies: Sequence[str] | None) -> str | None:
    decision = Decision(decision)
    if decision == Decision.unsure:
        return None
    if decision == Decision.not_violating:
        return NO_VIOLATION
    codes = [c for c in policies or [] if c != NO_VIOLATION]
    return codes[0] if codes else None


def checked_answer(
    session: Session,
    project: Project,
    decision: Decision | str,
    policies: Sequence[str] | None,
    severity: int | None,
) -> tuple[Answer, PolicyVersion]:
    """An answer checked against the project's current taxonomy by the rules labels follow
    (known codes, `none` only with not_violating, a severity on the code's scale)."""
    try:
        data = parse_label_input(
            {
                "decision": decision.value if isinstance(decision, Decision) else decision,
                "policies": list(policies or []),
                "severity": severity,
                "idempotency_key": "-",  # required by the shape; an answer is not a label
            }
        )
    except WorkbenchError as exc:
        raise WorkbenchError(f"invalid answer: {exc.problems[0]}", exc.problems) from None
    pv = current_policy_version(session, project)
    # An answer has no spans, so the item facts that only span checks read stay empty; and it
    # is checked as an imported label: the reviewer's rationale rule is not for a lead's answer.
    no_item = ItemFacts(id=0, external_id="", text_length=None, has_media=False, duration_s=None)
    problems = check_label(data, no_item, PolicyRules.of(pv), LabelSource.import_)
    if problems:
        raise WorkbenchError(f"invalid answer: {problems[0]}", problems)
    return Answer(data.decision, tuple(data.policies), data.severity), pv


def answer_choices(session: Session, project: Project) -> dict[str, Any]:
    """What an answer may say under the current taxonomy: decisions, codes, severity levels."""
    pv = current_policy_version(session, project)
    return {
        "version": pv.version,
        "decisions": [d.value for d in Decision],
        "codes": [
            {
                "code": p.code,
                "title": p.title,
                "severity_levels": sorted(int(lv["level"]) for lv in p.severity_scale or []),
            }
            for p in pv.policies
        ],
    }


# --- marking ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoldInput:
    """One gold answer to record; `line`/`file` locate it when it came from a file."""

    external_id: str
    decision: str
    policies: tuple[str, ...] = ()
    severity: int | None = None
    note: str | None = None
    line: int | None = None
    file: str | None = None


def _item(session: Session, project: Project, external_id: str) -> Item:
    item = session.scalar(
        select(Item).where(Item.project_id == project.id, Item.external_id == external_id)
    )
    if item is None:
        raise NotFoundError(f"no item with external_id {external_id!r} in {project.name!r}")
    return item


def _gold_row(session: Session, project: Project, item_id: int) -> GoldItem | None:
    return session.scalar(
        select(GoldItem).where(GoldItem.project_id == project.id, GoldItem.item_id == item_id)
    )


def _open_gold_entry(session: Session, project: Project, item: Item, actor: Actor) -> None:
    """The item's own way into queues. Any other open entry of the item is cancelled: a gold
    item must not also reach reviewers as an ordinary selected item."""
    open_entry = session.scalar(
        select(QueueEntry).where(
            QueueEntry.item_id == item.id, QueueEntry.status == EntryStatus.pending
        )
    )
    if open_entry is not None and open_entry.kind == EntryKind.gold:
        return
    if open_entry is not None:
        open_entry.status = EntryStatus.cancelled
        session.flush()
    enqueue(
        session,
        project,
        [NewEntry(item.id, kind=EntryKind.gold, overlap_target=GOLD_OVERLAP_TARGET)],
        actor,
    )


def mark_gold_many(
    session: Session, project: Project, actor: Actor, answers: Sequence[GoldInput]
) -> dict[str, Any]:
    """Record gold answers, all or nothing: every bad answer is reported (file, line, field)
    and nothing is written. Marking an item again with the same answer changes nothing; with
    another answer (or after retiring) it updates the answer, audited with the old one."""
    require_project_role(session, actor, project, Role.lead, action="mark gold items")
    problems: list[Problem] = []
    checked: list[tuple[GoldInput, Item, Answer, PolicyVersion]] = []
    seen: dict[str, int | None] = {}
    for a in answers:

        def bad(field: str | None, reason: str, a: GoldInput = a) -> None:
            problems.append(
                Problem(reason, line=a.line, external_id=a.external_id, field=field, file=a.file)
            )

        if a.external_id in seen:
            where = f"line {seen[a.external_id]}" if seen[a.external_id] else "an earlier answer"
            bad("external_id", f"the item appears twice (also at {where})")
            continue
        seen[a.external_id] = a.line
        try:
            item = _item(session, project, a.external_id)
        except NotFoundError as exc:
            bad("external_id", exc.message)
            continue
        if a.decision == Decision.unsure.value:
            bad("decision", "a gold answer must be violating or not_violating, not unsure")
            continue
        try:
            answer, pv = checked_answer(session, project, a.decision, a.policies, a.severity)
        except WorkbenchError as exc:
            for p in exc.problems or [Problem(exc.message)]:
                bad(p.field, p.reason)
            continue
        checked.append((a, item, answer, pv))
    if problems:
        first = f"invalid gold answer: {problems[0]}"
        if len(problems) > 1:
            first += f" (and {len(problems) - 1} more)"
        raise WorkbenchError(f"{first}; nothing was recorded", problems)
    now = utcnow()
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    marked: list[dict[str, Any]] = []
    for a, item, answer, pv in checked:
        note = (a.note or "").strip() or None
        row = _gold_row(session, project, item.id)
        if row is None:
            row = GoldItem(
                project_id=project.id, item_id=item.id, created_by=actor.name, created_at=now
            )
            session.add(row)
            status, before = "created", None
        else:
            before = {**_answer_of(row).as_dict(), "retired": row.retired_at is not None}
            same = _answer_of(row) == answer and row.retired_at is None and row.note == note
            status = "unchanged" if same else "updated"
        if status != "unchanged":
            row.decision = answer.decision
            row.policies = list(answer.policies)
            row.severity = answer.severity
            row.policy_version_id = pv.id
            row.note = note
            row.updated_at = now
            row.retired_at = None
            row.retired_by = None
            session.flush()
            record_event(
                session, actor, "gold.marked", project_id=project.id, entity_type="item",
                entity_id=item.external_id,
                details={**answer.as_dict(), "note": note, "before": before,
                         "policy_version": pv.version},
            )  # fmt: skip
        _open_gold_entry(session, project, item, actor)
        counts[status] += 1
        marked.append({"external_id": item.external_id, "status": status, **answer.as_dict()})
    return {**counts, "items": marked}


def mark_gold(
    session: Session,
    project: Project,
    actor: Actor,
    external_id: str,
    decision: str,
    policies: Sequence[str] = (),
    severity: int | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Mark one item as gold with its answer (see `mark_gold_many`)."""
    return mark_gold_many(
        session,
        project,
        actor,
        [GoldInput(external_id, decision, tuple(policies), severity, note)],
    )


def retire_gold(
    session: Session, project: Project, actor: Actor, external_id: str, note: str | None = None
) -> dict[str, Any]:
    """Stop using an item as gold: its queue entry closes (leases in flight may still submit)
    and its answers no longer count towards accuracy or training. The row stays."""
    require_project_role(session, actor, project, Role.lead, action="retire gold items")
    item = _item(session, project, external_id)
    row = _gold_row(session, project, item.id)
    if row is None or row.retired_at is not None:
        raise WorkbenchError(f"item {external_id!r} is not an active gold item")
    row.retired_at = utcnow()
    row.retired_by = actor.name
    session.execute(
        update(QueueEntry)
        .where(
            QueueEntry.item_id == item.id,
            QueueEntry.kind == EntryKind.gold,
            QueueEntry.status == EntryStatus.pending,
        )
        .values(status=EntryStatus.cancelled)
        .execution_options(synchronize_session=False)
    )
    record_event(
        session, actor, "gold.retired", project_id=project.id, entity_type="item",
        entity_id=external_id, details={"note": note},
    )  # fmt: skip
    return {"external_id": external_id, "retired": True}


def _answer_of(row: GoldItem) -> Answer:
    return Answer(Decision(row.decision), tuple(row.policies or []), row.severity)


def gold_answers(session: Session, project: Project) -> dict[int, Answer]:
    """Active gold items: item id -> answer."""
    rows = session.scalars(
        select(GoldItem).where(GoldItem.project_id == project.id, GoldItem.retired_at.is_(None))
    )
    return {row.item_id: _answer_of(row) for row in rows}


def list_gold(
    session: Session, project: Project, actor: Actor, *, include_retired: bool = False
) -> list[dict[str, Any]]:
    """Gold items with their answers and how many reviewers have labelled them through gold."""
    require_project_role(session, actor, project, Role.lead, action="see gold items")
    q = (
        select(GoldItem, Item.external_id)
        .join(Item, Item.id == GoldItem.item_id)
        .where(GoldItem.project_id == project.id)
        .order_by(GoldItem.id)
    )
    if not include_retired:
        q = q.where(GoldItem.retired_at.is_(None))
    rows = session.execute(q).all()
    served = dict(
        session.execute(
            select(QueueEntry.item_id, func.sum(QueueEntry.completed))
            .where(QueueEntry.project_id == project.id, QueueEntry.kind == EntryKind.gold)
            .group_by(QueueEntry.item_id)
        ).all()
    )
    return [
        {
            "external_id": ext,
            **_answer_of(row).as_dict(),
            "note": row.note,
            "created_by": row.created_by,
            "created_at": row.created_at.isoformat(),
            "retired_at": row.retired_at.isoformat() if row.retired_at else None,
            "answered_through_gold": int(served.get(row.item_id) or 0),
        }
        for row, ext in rows
    ]


# --- files -------------------------------------------------------------------------------------


def read_gold_file(path: Path) -> list[GoldInput]:
    """Gold answers from a JSONL or CSV file: columns external_id, decision (required),
    policies (a list, or "hate;harassment" in CSV), severity, note. Every unreadable row is
    reported with its line and field, and then nothing is returned."""
    name = str(path)
    out: list[GoldInput] = []
    problems: list[Problem] = []
    for rec in iter_records(path):
        if not isinstance(rec, Record):
            problems.append(rec)
            continue
        raw = rec.data
        ext = raw.get("external_id")
        ext_text = None if ext is None else str(ext)

        def bad(field: str | None, reason: str, line: int = rec.line, ext: Any = ext_text) -> None:
            problems.append(Problem(reason, line=line, external_id=ext, field=field, file=name))

        unknown = [k for k in raw if k not in GOLD_COLUMNS]
        for k in unknown:
            bad(k, f"unknown column (known: {', '.join(GOLD_COLUMNS)})")
        for k in ("external_id", "decision"):
            if raw.get(k) in (None, ""):
                bad(k, "required, but missing or empty")
        policies = raw.get("policies")
        if isinstance(policies, str):
            policies = [c.strip() for c in policies.split(";") if c.strip()]
        if policies is None:
            policies = []
        if not isinstance(policies, list) or not all(isinstance(c, str) for c in policies):
            bad("policies", f"expected a list of policy codes, found {policies!r}")
            policies = []
        severity = raw.get("severity")
        if severity in (None, ""):
            severity = None
        elif isinstance(severity, str):
            try:
                severity = int(severity.strip())
            except ValueError:
                bad("severity", f"expected an integer, found {severity!r}")
                severity = None
        elif not isinstance(severity, int) or isinstance(severity, bool):
            bad("severity", f"expected an integer, found {severity!r}")
            severity = None
        note = raw.get("note")
        if note is not None and not isinstance(note, str):
            bad("note", f"expected text, found {note!r}")
            note = None
        if unknown or raw.get("external_id") in (None, "") or raw.get("decision") in (None, ""):
            continue
        out.append(
            GoldInput(
                external_id=str(ext),
                decision=str(raw["decision"]),
                policies=tuple(policies),
                severity=severity,
                note=note,
                line=rec.line,
                file=name,
            )
        )
    if problems:
        raise WorkbenchError(f"{name}: {len(problems)} problem(s); nothing was recorded", problems)
    if not out:
        raise WorkbenchError(f"{name}: no gold answers in the file")
    return out


# --- accuracy ----------------------------------------------------------------------------------


def wilson_interval(correct: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for a proportion (statsmodels)."""
    low, high = proportion_confint(correct, n, alpha=alpha, method="wilson")
    return float(low), float(high)


def _last_alert_states(session: Session, project: Project) -> dict[str, str]:
    rows = session.execute(
        select(AuditEvent.entity_id, AuditEvent.action)
        .where(
            AuditEvent.project_id == project.id,
            AuditEvent.action.in_([ALERT_RAISED, ALERT_CLEARED]),
        )
        .order_by(AuditEvent.id)
    ).all()
    return {str(name): action for name, action in rows}


def accuracy_table(labels: pd.DataFrame, answers: dict[int, Answer]) -> pd.DataFrame:
    """One row per counted label on a gold item: reviewer, week, decision and policy right?

    `labels` are counted labels (`load_counted_labels` columns). Policy is right when the
    label's training class (first violation code, `none`, or nothing for unsure) is the
    answer's.
    """
    columns = ["reviewer", "week", "decision_ok", "policy_ok"]
    on_gold = labels[labels["item_id"].isin(list(answers))] if not labels.empty else labels
    if on_gold.empty:
        return pd.DataFrame(columns=columns)
    truth = [answers[int(i)] for i in on_gold["item_id"]]
    decision_ok = [d == t.decision.value for d, t in zip(on_gold["decision"], truth, strict=True)]
    policy_ok = [
        answer_class(d, [p] if isinstance(p, str) else []) == t.training_class
        and t.training_class is not None
        for d, p, t in zip(on_gold["decision"], on_gold["primary_policy"], truth, strict=True)
    ]
    return pd.DataFrame(
        {
            "reviewer": on_gold["reviewer"].astype(str).to_numpy(),
            "week": iso_week(on_gold["created_at"]).to_numpy(),
            "decision_ok": decision_ok,
            "policy_ok": policy_ok,
        }
    )


def gold_accuracy(
    session: Session,
    project: Project,
    actor: Actor,
    *,
    window_days: int | None = None,
    now: datetime | None = None,
    record_alerts: bool = True,
) -> dict[str, Any]:
    """Each reviewer's accuracy on active gold items, with a Wilson 95% interval, n, a weekly
    trend and an alert (see `ALERT_RULE`).

    Counted are the reviewer's counted labels (current, by people, latest per item: the
    agreement rules) on active gold items, made in the last `window_days` (default: the
    project's `gold_window_days`; 0 = all time). With the project's own window, each change
    of a reviewer's alert state (raised, cleared) is written once as an audit event; an ad hoc
    window records nothing.
    """
    require_project_role(session, actor, project, Role.lead, action="see gold accuracy")
    settings = project_settings(project)
    now = now or utcnow()
    days = settings.gold_window_days if window_days is None else window_days
    if days < 0:
        raise WorkbenchError(f"the window must be 0 (all time) or more days, got {days}")
    since = now - timedelta(days=days) if days else None
    answers = gold_answers(session, project)
    labels = load_counted_labels(session, project)
    if since is not None and not labels.empty:
        labels = labels[pd.to_datetime(labels["created_at"], utc=True) >= pd.Timestamp(since)]
    table = accuracy_table(labels, answers)
    threshold, min_n = settings.gold_alert_threshold, settings.gold_alert_min_answers
    reviewers: list[dict[str, Any]] = []
    for name, rows in table.groupby("reviewer", sort=True):
        n = len(rows)
        correct = int(rows["decision_ok"].sum())
        policy_correct = int(rows["policy_ok"].sum())
        low, high = wilson_interval(correct, n)
        p_low, p_high = wilson_interval(policy_correct, n)
        accuracy = correct / n
        trend = [
            {"week": str(week), "n": len(w), "correct": int(w["decision_ok"].sum()),
             "accuracy": float(w["decision_ok"].mean())}
            for week, w in rows.groupby("week", sort=True)
        ]  # fmt: skip
        reviewers.append(
            {
                "reviewer": str(name),
                "n": n,
                "correct": correct,
                "accuracy": accuracy,
                "ci_low": low,
                "ci_high": high,
                "policy_correct": policy_correct,
                "policy_accuracy": policy_correct / n,
                "policy_ci_low": p_low,
                "policy_ci_high": p_high,
                "alert": n >= min_n and accuracy < threshold,
                "confident": n >= min_n and high < threshold,
                "trend": trend,
            }
        )
    recorded: list[dict[str, str]] = []
    if record_alerts and window_days is None:
        recorded = _record_crossings(session, project, actor, reviewers)
    return {
        "project": project.name,
        "window_days": days,
        "since": since.isoformat() if since else None,
        "gold_items": len(answers),
        "threshold": threshold,
        "min_answers": min_n,
        "rule": ALERT_RULE,
        "reviewers": reviewers,
        "alerts": [r["reviewer"] for r in reviewers if r["alert"]],
        "alerts_recorded": recorded,
    }


def _record_crossings(
    session: Session, project: Project, actor: Actor, reviewers: Iterable[dict[str, Any]]
) -> list[dict[str, str]]:
    """An audit event each time a reviewer's alert state changes, never twice for one state."""
    last = _last_alert_states(session, project)
    now_alert = {r["reviewer"]: r for r in reviewers}
    out: list[dict[str, str]] = []
    for name in sorted(set(last) | set(now_alert)):
        row = now_alert.get(name)
        alert = bool(row and row["alert"])
        was = last.get(name) == ALERT_RAISED
        if alert == was:
            continue
        action = ALERT_RAISED if alert else ALERT_CLEARED
        details = (
            {k: row[k] for k in ("n", "correct", "accuracy", "ci_low", "ci_high")} if row else {}
        )
        record_event(
            session, actor, action, project_id=project.id, entity_type="reviewer",
            entity_id=name, details=details,
        )  # fmt: skip
        out.append({"reviewer": name, "action": action})
    return out
