"""Enforcement decisions: one row per action taken on an item, the facts an EU DSA statement of
reasons and the transparency report are made of.

A decision is written when the action is taken (a reviewer's violating label, a lead's
adjudication, a scan's block), not computed later from whatever labels are current: the
Transparency Database and a complaint name a decision by its platform-unique id (`puid`), so that
id and the facts it was taken on must not move when labels are corrected later. What does change
is recorded on the row and audited: a lead's override of restriction or ground (before and
after), and a reversal (`revoked_at`, by an appeal, a correction or an adjudication).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.db.models import (
    Adjudication,
    Decision,
    DecisionOrigin,
    EnforcementDecision,
    Item,
    Label,
    LabelSource,
    Policy,
    Project,
    QueueEntry,
    Role,
)
from workbench.db.types import utcnow
from workbench.errors import NotFoundError, Problem, WorkbenchError
from workbench.services.audit import Actor, record_event
from workbench.services.labels.current import HUMAN_SOURCES, current_labels
from workbench.services.membership import require_project_role
from workbench.services.report import sor_rules
from workbench.services.taxonomy import current_policy_version

# Our restriction names -> (the statement field, its value). One restriction per decision.
RESTRICTIONS: dict[str, tuple[str, str]] = {
    "removed": ("decision_visibility", "DECISION_VISIBILITY_CONTENT_REMOVED"),
    "disabled": ("decision_visibility", "DECISION_VISIBILITY_CONTENT_DISABLED"),
    "demoted": ("decision_visibility", "DECISION_VISIBILITY_CONTENT_DEMOTED"),
    "age_restricted": ("decision_visibility", "DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED"),
    "interaction_restricted": (
        "decision_visibility",
        "DECISION_VISIBILITY_CONTENT_INTERACTION_RESTRICTED",
    ),
    "labelled": ("decision_visibility", "DECISION_VISIBILITY_CONTENT_LABELLED"),
    "visibility_other": ("decision_visibility", "DECISION_VISIBILITY_OTHER"),
    "monetary_suspension": ("decision_monetary", "DECISION_MONETARY_SUSPENSION"),
    "monetary_termination": ("decision_monetary", "DECISION_MONETARY_TERMINATION"),
    "monetary_other": ("decision_monetary", "DECISION_MONETARY_OTHER"),
    "provision_partial_suspension": ("decision_provision", "DECISION_PROVISION_PARTIAL_SUSPENSION"),
    "provision_total_suspension": ("decision_provision", "DECISION_PROVISION_TOTAL_SUSPENSION"),
    "provision_partial_termination": (
        "decision_provision",
        "DECISION_PROVISION_PARTIAL_TERMINATION",
    ),
    "provision_total_termination": ("decision_provision", "DECISION_PROVISION_TOTAL_TERMINATION"),
    "account_suspended": ("decision_account", "DECISION_ACCOUNT_SUSPENDED"),
    "account_terminated": ("decision_account", "DECISION_ACCOUNT_TERMINATED"),
}
# The restrictions that need a free-text description (`..._other` in the statement).
NEEDS_OTHER = {"visibility_other", "monetary_other"}
GROUNDS = ("illegal", "incompatible")
SOURCE_TYPES: dict[str, str] = {
    "voluntary": "SOURCE_VOLUNTARY",
    "article_16": "SOURCE_ARTICLE_16",
    "trusted_flagger": "SOURCE_TRUSTED_FLAGGER",
    "other_notification": "SOURCE_TYPE_OTHER_NOTIFICATION",
}
AUTOMATED_DECISIONS: dict[str, str] = {
    "fully": "AUTOMATED_DECISION_FULLY",
    "partially": "AUTOMATED_DECISION_PARTIALLY",
    "not": "AUTOMATED_DECISION_NOT_AUTOMATED",
}
CONTENT_TYPES: dict[str, str] = {
    "text": "CONTENT_TYPE_TEXT",
    "image": "CONTENT_TYPE_IMAGE",
    "audio": "CONTENT_TYPE_AUDIO",
    "video": "CONTENT_TYPE_VIDEO",
}
# A policy without a DSA category maps here ("Other violation of provider's terms").
FALLBACK_CATEGORY = "OTHER_VIOLATION_TC"
MAX_FACTS = 5000  # decision_facts: max:5000


@dataclass(frozen=True)
class Enforcement:
    """A policy's default action on a violation (the taxonomy's `dsa_enforcement`)."""

    restriction: str
    ground: str
    terms_clause: str | None
    legal_ground: str | None
    explanation: str | None
    category: str

    @classmethod
    def of(cls, policy: Policy | None) -> Enforcement:
        raw: dict[str, Any] = dict((policy.dsa_enforcement if policy else None) or {})
        title = policy.title if policy else "Terms of service"
        restriction = str(raw.get("restriction") or "removed")
        ground = str(raw.get("ground") or "incompatible")
        return cls(
            restriction=restriction if restriction in RESTRICTIONS else "removed",
            ground=ground if ground in GROUNDS else "incompatible",
            terms_clause=raw.get("terms_clause") or f"Community Guidelines: {title}",
            legal_ground=raw.get("legal_ground"),
            explanation=raw.get("explanation"),
            category=_category(policy.dsa_category if policy else None),
        )


def _category(dsa_category: str | None) -> str:
    if dsa_category and f"STATEMENT_CATEGORY_{dsa_category}" in sor_rules.STATEMENT_CATEGORIES:
        return dsa_category
    return FALLBACK_CATEGORY


def _policy(session: Session, policy_version_id: int | None, code: str | None) -> Policy | None:
    if policy_version_id is None or code is None:
        return None
    return session.scalar(
        select(Policy).where(Policy.policy_version_id == policy_version_id, Policy.code == code)
    )


def primary_policy(codes: list[str]) -> str | None:
    return next((c for c in codes if c != "none"), None)


def make_puid(project_id: int, origin: DecisionOrigin, ref: int | str) -> str:
    """Unique on this installation and stable: the origin and the row it came from."""
    return f"wb-p{project_id}-{origin.value}-{ref}"


def content_types_of(item: Item) -> list[str]:
    return sorted({m for m in (item.modalities or []) if m in CONTENT_TYPES}) or ["text"]


def _day(value: Any, fallback: datetime) -> str:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10]).isoformat()
        except ValueError:
            pass
    return fallback.date().isoformat()


def _scope(item: Item) -> list[str]:
    # An item may name the states it was restricted in (metadata `territorial_scope`);
    # otherwise the service is taken to restrict it across the EU and EEA.
    wanted = (item.meta or {}).get("territorial_scope")
    if isinstance(wanted, list) and wanted:
        return sorted({str(c).upper() for c in wanted})
    return list(sor_rules.EEA_COUNTRY_CODES)


def _facts(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_FACTS else text[: MAX_FACTS - 1] + "…"


def _automated_detection(session: Session, item: Item, before: datetime) -> bool:
    """Whether a model picked the item for review (an entry ranked by a model version, not
    the random share): then the content was detected by automated means."""
    entry = session.scalar(
        select(QueueEntry)
        .where(QueueEntry.item_id == item.id, QueueEntry.created_at <= before)
        .order_by(QueueEntry.id.desc())
        .limit(1)
    )
    return entry is not None and entry.model_version_id is not None and entry.strategy != "random"


def active_decision(session: Session, item_id: int) -> EnforcementDecision | None:
    """The item's decision in force (not revoked), newest first."""
    return session.scalar(
        select(EnforcementDecision)
        .where(EnforcementDecision.item_id == item_id, EnforcementDecision.revoked_at.is_(None))
        .order_by(EnforcementDecision.id.desc())
        .limit(1)
    )


def _record(
    session: Session, actor: Actor, project_id: int, item: Item, row: EnforcementDecision
) -> EnforcementDecision:
    session.add(row)
    session.flush()
    record_event(
        session, actor, "decision.made", project_id=project_id,
        entity_type="enforcement_decision", entity_id=row.puid,
        details={"item": item.external_id, "origin": row.origin.value, "policy": row.policy_code,
                 "restriction": row.restriction, "ground": row.ground},
    )  # fmt: skip
    return row


def _new_decision(
    *,
    project_id: int,
    item: Item,
    origin: DecisionOrigin,
    ref: int | str,
    policy: Policy | None,
    policy_code: str | None,
    decided_by: str,
    decided_by_user_id: int | None,
    when: datetime,
    facts: str,
    automated_detection: bool,
    automated_decision: str,
    restriction: str | None = None,
) -> EnforcementDecision:
    rule = Enforcement.of(policy)
    return EnforcementDecision(
        project_id=project_id,
        item_id=item.id,
        puid=make_puid(project_id, origin, ref),
        origin=origin,
        decided_by=decided_by,
        decided_by_user_id=decided_by_user_id,
        policy_code=policy_code,
        policy_version_id=policy.policy_version_id if policy else None,
        restriction=restriction or rule.restriction,
        ground=rule.ground,
        legal_ground=rule.legal_ground if rule.ground == "illegal" else None,
        terms_clause=rule.terms_clause if rule.ground == "incompatible" else None,
        ground_explanation=rule.explanation
        or f"The content breaks the {policy.title if policy else 'service'} policy.",
        category=rule.category,
        content_types=content_types_of(item),
        content_date=_day((item.meta or {}).get("content_date"), item.created_at),
        application_date=when.date().isoformat(),
        territorial_scope=_scope(item),
        language=item.language,
        facts=_facts(facts),
        automated_detection=automated_detection,
        automated_decision=automated_decision,
        source_type="voluntary",
        created_at=when,
    )


def decide_from_label(
    session: Session, label: Label, actor: Actor, *, imported: bool = False
) -> EnforcementDecision | None:
    """A decision for a reviewer's violating label, unless the item already has one in force
    (overlap reviewers agreeing make one action, not k). Imported labels make none unless
    asked (`imported`): they were judged elsewhere, where the action may have been taken."""
    allowed = (LabelSource.human, LabelSource.import_) if imported else (LabelSource.human,)
    if label.source not in allowed or label.decision != Decision.violating:
        return None
    if active_decision(session, label.item_id) is not None:
        return None
    item = session.get_one(Item, label.item_id)
    code = primary_policy(list(label.policies))
    policy = _policy(session, label.policy_version_id, code)
    title = policy.title if policy else "the terms of service"
    facts = f"A reviewer judged the content to break the policy {title}."
    rationale = (label.rationale or "").strip()
    if rationale:
        facts += f" Reviewer's rationale: {rationale}"
    row = _new_decision(
        project_id=label.project_id, item=item, origin=DecisionOrigin.label, ref=label.id,
        policy=policy, policy_code=code, decided_by=label.reviewer.name,
        decided_by_user_id=label.reviewer_id, when=label.created_at, facts=facts,
        automated_detection=_automated_detection(session, item, label.created_at),
        automated_decision="not",
    )  # fmt: skip
    row.label_id = label.id
    return _record(session, actor, label.project_id, item, row)


def decide_from_adjudication(
    session: Session, case: Adjudication, actor: Actor
) -> EnforcementDecision | None:
    """A lead's final decision: violating makes a decision if none is in force; not violating
    reverses the one in force."""
    current = active_decision(session, case.item_id)
    if case.decision == Decision.not_violating and current is not None:
        revoke(session, current, actor, f"adjudication case {case.id}: not violating")
        return None
    if case.decision != Decision.violating or current is not None:
        return None
    item = session.get_one(Item, case.item_id)
    code = primary_policy(list(case.policies))
    policy = _policy(session, case.policy_version_id, code)
    title = policy.title if policy else "the terms of service"
    facts = f"After reviewers disagreed, a lead decided the content breaks the policy {title}."
    note = (case.note or "").strip()
    if note:
        facts += f" Lead's note: {note}"
    row = _new_decision(
        project_id=case.project_id, item=item, origin=DecisionOrigin.adjudication, ref=case.id,
        policy=policy, policy_code=code, decided_by=case.closed_by or actor.name,
        decided_by_user_id=case.closed_by_user_id, when=case.closed_at or utcnow(), facts=facts,
        automated_detection=_automated_detection(session, item, case.closed_at or utcnow()),
        automated_decision="not",
    )  # fmt: skip
    row.adjudication_id = case.id
    return _record(session, actor, case.project_id, item, row)


def record_scan_decision(
    session: Session,
    project: Project,
    item: Item,
    *,
    policy_code: str,
    scan_ref: str,
    actor: Actor,
    facts: str,
    policy_version_id: int | None = None,
    automated_decision: str = "fully",
    restriction: str | None = None,
    when: datetime | None = None,
) -> EnforcementDecision:
    """A scan blocked `item` (a hash match, a classifier over threshold): detection automated,
    the decision fully automated unless a person confirmed it ("partially"). `scan_ref` names
    the scan's match; the same ref again returns the decision it made."""
    if automated_decision not in ("fully", "partially"):
        raise WorkbenchError(
            f"a scan's decision is 'fully' or 'partially' automated, not {automated_decision!r}"
        )
    if restriction is not None and restriction not in RESTRICTIONS:
        raise WorkbenchError(
            f"unknown restriction {restriction!r} (one of {', '.join(RESTRICTIONS)})"
        )
    ref = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in scan_ref)
    puid = make_puid(project.id, DecisionOrigin.scan, ref)
    existing = session.scalar(select(EnforcementDecision).where(EnforcementDecision.puid == puid))
    if existing is not None:
        return existing
    if policy_version_id is None:
        policy_version_id = current_policy_version(session, project).id
    policy = _policy(session, policy_version_id, policy_code)
    if policy is None:
        raise WorkbenchError(f"policy {policy_code!r} is not in the project's taxonomy")
    row = _new_decision(
        project_id=project.id, item=item, origin=DecisionOrigin.scan, ref=ref, policy=policy,
        policy_code=policy_code, decided_by=actor.name, decided_by_user_id=actor.user_id,
        when=when or utcnow(), facts=facts, automated_detection=True,
        automated_decision=automated_decision, restriction=restriction,
    )  # fmt: skip
    row.scan_ref = scan_ref[:200]
    return _record(session, actor, project.id, item, row)


def backfill_decisions(
    session: Session, project: Project, actor: Actor, limit: int | None = None
) -> list[EnforcementDecision]:
    """Decisions for current violating labels (by people, or imported) of items that have
    none, oldest label first: for labels recorded before decisions existed, and the demo."""
    require_project_role(session, actor, project, Role.lead, action="make enforcement decisions")
    made: list[EnforcementDecision] = []
    for label in current_labels(session, project, sources=HUMAN_SOURCES):
        if limit is not None and len(made) >= limit:
            break
        row = decide_from_label(session, label, actor, imported=True)
        if row is not None:
            made.append(row)
    return made


def revoke(session: Session, row: EnforcementDecision, actor: Actor, reason: str) -> None:
    """Reverse a decision (the row stays, with when and why)."""
    if row.revoked_at is not None:
        return
    row.revoked_at = utcnow()
    row.revoked_reason = reason
    session.flush()
    record_event(
        session, actor, "decision.revoked", project_id=row.project_id,
        entity_type="enforcement_decision", entity_id=row.puid, details={"reason": reason},
    )  # fmt: skip


def get_decision(session: Session, project: Project, puid: str) -> EnforcementDecision:
    row = session.scalar(
        select(EnforcementDecision).where(
            EnforcementDecision.project_id == project.id, EnforcementDecision.puid == puid
        )
    )
    if row is None:
        raise NotFoundError(f"no decision {puid!r} in project {project.name!r}")
    return row


OVERRIDABLE = (
    "restriction",
    "restriction_other",
    "ground",
    "legal_ground",
    "terms_clause",
    "ground_explanation",
)


def override_decision(
    session: Session,
    project: Project,
    actor: Actor,
    puid: str,
    changes: Mapping[str, str | None],
    note: str,
) -> dict[str, Any]:
    """A lead changes one decision's restriction or ground; audited with before and after."""
    require_project_role(
        session, actor, project, Role.lead, action="change an enforcement decision"
    )
    if not note.strip():
        raise WorkbenchError("a note is required: say why the decision changes")
    unknown = sorted(set(changes) - set(OVERRIDABLE))
    if unknown:
        raise WorkbenchError(
            f"cannot change {', '.join(unknown)} (only {', '.join(OVERRIDABLE)})",
            [Problem(field=f, reason="not changeable") for f in unknown],
        )
    row = get_decision(session, project, puid)
    after = {**{f: getattr(row, f) for f in OVERRIDABLE}, **changes}
    problems = []
    if after["restriction"] not in RESTRICTIONS:
        problems.append(Problem(field="restriction", reason=f"one of {', '.join(RESTRICTIONS)}"))
    if after["ground"] not in GROUNDS:
        problems.append(Problem(field="ground", reason="'illegal' or 'incompatible'"))
    if after["ground"] == "illegal" and not after["legal_ground"]:
        problems.append(Problem(field="legal_ground", reason="required for illegal content"))
    if after["ground"] == "incompatible" and not after["terms_clause"]:
        problems.append(Problem(field="terms_clause", reason="required for a terms ground"))
    if after["restriction"] in NEEDS_OTHER and not after["restriction_other"]:
        problems.append(Problem(field="restriction_other", reason="describe the restriction"))
    if problems:
        raise WorkbenchError(f"cannot change decision {puid}: {problems[0]}", problems)
    before = {f: getattr(row, f) for f in OVERRIDABLE}
    # Fields the other ground or restriction needs no more are cleared, so the statement
    # never carries a stale legal ground on a terms decision.
    if after["ground"] == "illegal":
        after["terms_clause"] = None
    else:
        after["legal_ground"] = None
    if after["restriction"] not in NEEDS_OTHER:
        after["restriction_other"] = None
    for f in OVERRIDABLE:
        setattr(row, f, after[f])
    session.flush()
    record_event(
        session, actor, "decision.changed", project_id=project.id,
        entity_type="enforcement_decision", entity_id=puid,
        details={"before": before, "after": after, "note": note.strip()},
    )  # fmt: skip
    return decision_dict(row)


def decisions_between(
    session: Session, project: Project, since: str | None = None, until: str | None = None
) -> list[EnforcementDecision]:
    """The project's decisions applied in [since, until] (YYYY-MM-DD, inclusive), puid order."""
    query = select(EnforcementDecision).where(EnforcementDecision.project_id == project.id)
    if since:
        query = query.where(EnforcementDecision.application_date >= since)
    if until:
        query = query.where(EnforcementDecision.application_date <= until)
    return list(session.scalars(query.order_by(EnforcementDecision.id)))


def decision_dict(row: EnforcementDecision) -> dict[str, Any]:
    return {
        "puid": row.puid,
        "item_id": row.item_id,
        "origin": row.origin.value,
        "policy": row.policy_code,
        "restriction": row.restriction,
        "ground": row.ground,
        "category": row.category,
        "application_date": row.application_date,
        "automated_detection": row.automated_detection,
        "automated_decision": row.automated_decision,
        "revoked": row.revoked_at is not None,
    }
