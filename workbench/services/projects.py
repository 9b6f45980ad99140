"""Projects, their typed settings, and who may read and change those settings."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.db.models import Project, Role
from workbench.errors import NotFoundError, Problem, WorkbenchError
from workbench.schemas import SETTING_KEYS_HELP, ProjectSettings, TaxonomySpec
from workbench.services.audit import Actor, record_event, require_role
from workbench.services.membership import add_creator, require_member, require_project_role
from workbench.services.taxonomy import add_policy_version, default_taxonomy

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

_ENGINEER = frozenset({Role.engineer, Role.admin})
_LEAD = frozenset({Role.lead, Role.admin})
# Who may change each setting (the top-level key; `encoders.text` is `encoders`): engineers the
# model and selection, leads what decides the quality of the labels and the reviewers' work,
# admins everything. The CLI acts as `system`, which may change every one.
SETTING_ROLES: dict[str, frozenset[Role]] = {
    "encoders": _ENGINEER,
    "retrain_every_n_labels": _ENGINEER,
    "selection_mix": _ENGINEER,
    "batch_size": _ENGINEER,
    "near_duplicate_threshold": _ENGINEER,
    "propagate_to_duplicates": _ENGINEER,
    "target_precision": _ENGINEER,
    "promotion_rule": _ENGINEER,
    "drift_psi_alert": _ENGINEER,
    "drift_auc_alert": _ENGINEER,
    "engine": _ENGINEER,
    "overlap_share": _LEAD,
    "overlap_k": _LEAD,
    "gold_rate": _LEAD,
    "gold_alert_threshold": _LEAD,
    "gold_alert_min_answers": _LEAD,
    "gold_window_days": _LEAD,
    "adjudicate_low_alpha_slices": _LEAD,
    "adjudication_alpha_threshold": _LEAD,
    "adjudication_min_slice_items": _LEAD,
    "lease_seconds": _LEAD,
    "show_model_suggestion_after_submit": _LEAD,
    "label_aggregation": _LEAD,
    # What a scan blocks or holds is a policy decision, as the thresholds of review are.
    "scan_thresholds": _LEAD,
    "scan_default_thresholds": _LEAD,
    "scan_deadline_decision": _LEAD,
}


def get_project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        raise NotFoundError(
            f"no project named {name!r} (create it with `workbench project create {name}`)"
        )
    return project


def find_project(session: Session, name: str) -> Project | None:
    return session.scalar(select(Project).where(Project.name == name))


def project_names(session: Session) -> list[str]:
    """Every project, by name. Pages list only what the user may open: `membership.projects_for`."""
    return list(session.scalars(select(Project.name).order_by(Project.name)))


def create_project(
    session: Session,
    name: str,
    actor: Actor,
    *,
    taxonomy: TaxonomySpec | None = None,
    settings: ProjectSettings | None = None,
) -> Project:
    if not _NAME.match(name):
        raise WorkbenchError(
            f"project name {name!r} is not allowed: use 1-128 letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    if find_project(session, name) is not None:
        raise WorkbenchError(f"a project named {name!r} already exists")
    project = Project(name=name, settings=(settings or ProjectSettings()).model_dump(mode="json"))
    session.add(project)
    session.flush()
    record_event(
        session,
        actor,
        "project.created",
        project_id=project.id,
        entity_type="project",
        entity_id=name,
    )
    add_policy_version(session, project, taxonomy or default_taxonomy(), actor)
    add_creator(session, project, actor)
    return project


def get_or_create_project(session: Session, name: str, actor: Actor) -> tuple[Project, bool]:
    project = find_project(session, name)
    if project is not None:
        return project, False
    return create_project(session, name, actor), True


def project_settings(project: Project) -> ProjectSettings:
    return ProjectSettings.model_validate(project.settings or {})


def project_settings_view(session: Session, project: Project, actor: Actor) -> dict[str, Any]:
    """The settings as JSON values, for leads, engineers and admins."""
    require_project_role(
        session,
        actor,
        project,
        Role.lead,
        Role.engineer,
        Role.admin,
        action="view project settings",
    )
    return project_settings(project).model_dump(mode="json")


def require_setting_role(actor: Actor, key: str) -> None:
    """Refuse a change of `key` by a role its row of `SETTING_ROLES` does not name."""
    top = key.split(".", 1)[0]
    allowed = SETTING_ROLES.get(top)
    if allowed is None:
        # Unknown keys are refused with the list of known ones once the role may change some.
        require_role(actor, Role.lead, Role.engineer, Role.admin, action="change project settings")
        return
    roles = [r for r in Role if r in allowed]
    require_role(actor, *roles, action=f"change project settings ({top!r})")


def set_project_setting(
    session: Session, project: Project, key: str, value: Any, actor: Actor
) -> ProjectSettings:
    """Set one dotted key (`batch_size`, `encoders.text`) after full validation.

    Who may is in `SETTING_ROLES`, by the key's top level; the CLI acts as the system actor.
    """
    require_setting_role(actor, key)
    require_member(session, actor, project)
    current = project_settings(project).model_dump(mode="json")
    parts = key.split(".")
    node: Any = current
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
            raise WorkbenchError(
                f"unknown setting {key!r}: {'.'.join(parts[: i + 1])!r} is not a group "
                f"({SETTING_KEYS_HELP})"
            )
        node = node[part]
    leaf = parts[-1]
    # selection_mix is a free-form mapping; every other leaf must already exist.
    if leaf not in node and not (len(parts) == 2 and parts[0] == "selection_mix"):
        known = ", ".join(sorted(node))
        raise WorkbenchError(f"unknown setting {key!r}; known keys here: {known}")
    old = node.get(leaf)
    node[leaf] = value
    try:
        validated = ProjectSettings.model_validate(current)
    except ValidationError as exc:
        problems = [
            Problem(field=".".join(str(p) for p in e["loc"]) or key, reason=e["msg"])
            for e in exc.errors()
        ]
        raise WorkbenchError(
            f"invalid value {value!r} for {key!r}: {problems[0].reason}", problems
        ) from None
    project.settings = validated.model_dump(mode="json")
    record_event(
        session,
        actor,
        "project.setting_changed",
        project_id=project.id,
        entity_type="project",
        entity_id=project.name,
        details={"key": key, "old": old, "new": value},
    )
    return validated
