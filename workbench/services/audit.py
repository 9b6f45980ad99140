"""Who is acting, what they may do, and the audit trail every meaningful write leaves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from workbench.db.models import AuditEvent, Role
from workbench.errors import PermissionDenied


@dataclass(frozen=True)
class Actor:
    """The person or process behind a write. The CLI acts as `system`; the UI as its user."""

    name: str
    user_id: int | None = None
    roles: frozenset[Role] = field(default_factory=frozenset)
    is_system: bool = False

    @classmethod
    def system(cls) -> Actor:
        return cls(name="system", is_system=True, roles=frozenset(Role))

    @classmethod
    def for_user(cls, name: str, user_id: int, role: Role) -> Actor:
        # An admin may do what every other role may; a lead may also review.
        implied = {
            Role.admin: set(Role),
            Role.lead: {Role.lead, Role.reviewer},
            Role.engineer: {Role.engineer},
            Role.reviewer: {Role.reviewer},
        }[role]
        return cls(name=name, user_id=user_id, roles=frozenset(implied))


def require_role(actor: Actor, *allowed: Role, action: str) -> None:
    """Refuse an action in the service layer, whatever the interface showed or hid."""
    if actor.is_system or actor.roles.intersection(allowed):
        return
    wanted = " or ".join(r.value for r in allowed)
    raise PermissionDenied(f"{actor.name} may not {action}: it needs the role {wanted}")


def record_event(
    session: Session,
    actor: Actor,
    action: str,
    *,
    project_id: int | None = None,
    entity_type: str | None = None,
    entity_id: str | int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        actor=actor.name,
        actor_user_id=actor.user_id,
        action=action,
        project_id=project_id,
        entity_type=entity_type,
        entity_id=None if entity_id is None else str(entity_id),
        details=details or {},
    )
    session.add(event)
    return event
