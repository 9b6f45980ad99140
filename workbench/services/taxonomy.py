"""Versioned policy taxonomies: every change is a new version; labels keep theirs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from workbench.db.models import Policy, PolicyVersion, Project, Role
from workbench.errors import NotFoundError, Problem, WorkbenchError
from workbench.schemas import TaxonomySpec
from workbench.services.audit import Actor, record_event
from workbench.services.membership import require_project_role
from workbench.taxonomy import default_taxonomy_json


def parse_taxonomy(data: Any, *, source: str) -> TaxonomySpec:
    try:
        return TaxonomySpec.model_validate(data)
    except ValidationError as exc:
        problems = [
            Problem(
                file=source,
                field=".".join(str(p) for p in err["loc"]) or None,
                reason=err["msg"],
            )
            for err in exc.errors()
        ]
        raise WorkbenchError(f"{source}: not a valid taxonomy", problems) from None


def parse_taxonomy_json(raw: bytes, *, source: str) -> TaxonomySpec:
    """A taxonomy from the bytes of a JSON file (read from disk or uploaded in the browser)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorkbenchError(f"{source}: not a JSON file: {exc}") from None
    return parse_taxonomy(data, source=source)


def load_taxonomy_file(path: Path) -> TaxonomySpec:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise WorkbenchError(f"{path}: no such taxonomy file") from None
    return parse_taxonomy_json(raw, source=str(path))


def default_taxonomy() -> TaxonomySpec:
    return parse_taxonomy(default_taxonomy_json(), source="default_taxonomy.json")


def taxonomy_checksum(spec: TaxonomySpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def current_policy_version(session: Session, project: Project) -> PolicyVersion:
    pv = session.scalar(
        select(PolicyVersion)
        .where(PolicyVersion.project_id == project.id)
        .order_by(PolicyVersion.version.desc())
        .limit(1)
        .options(selectinload(PolicyVersion.policies))
    )
    if pv is None:
        raise NotFoundError(f"project {project.name!r} has no policy taxonomy")
    return pv


def get_policy_version(session: Session, project: Project, version: int) -> PolicyVersion:
    pv = session.scalar(
        select(PolicyVersion)
        .where(PolicyVersion.project_id == project.id, PolicyVersion.version == version)
        .options(selectinload(PolicyVersion.policies))
    )
    if pv is None:
        raise NotFoundError(f"project {project.name!r} has no policy version {version}")
    return pv


def list_policy_versions(session: Session, project: Project) -> list[PolicyVersion]:
    return list(
        session.scalars(
            select(PolicyVersion)
            .where(PolicyVersion.project_id == project.id)
            .order_by(PolicyVersion.version)
            .options(selectinload(PolicyVersion.policies))
        )
    )


def add_policy_version(
    session: Session, project: Project, spec: TaxonomySpec, actor: Actor
) -> tuple[PolicyVersion, bool]:
    """Make `spec` the project's current taxonomy. Returns (version, created).

    Loading the taxonomy that is already current is a no-op, so scripts can re-run safely.
    """
    checksum = taxonomy_checksum(spec)
    latest = session.scalar(
        select(func.max(PolicyVersion.version)).where(PolicyVersion.project_id == project.id)
    )
    if latest is not None:
        current = current_policy_version(session, project)
        if current.checksum == checksum:
            return current, False
    pv = PolicyVersion(
        project_id=project.id,
        version=(latest or 0) + 1,
        name=spec.name,
        checksum=checksum,
        created_by=actor.name,
    )
    for pos, p in enumerate(spec.policies):
        pv.policies.append(
            Policy(
                position=pos,
                code=p.code,
                title=p.title,
                guideline=p.guideline,
                severity_scale=[s.model_dump() for s in p.severity_scale],
                dsa_category=p.dsa_category,
                dsa_enforcement=p.dsa_enforcement,
            )
        )
    session.add(pv)
    session.flush()
    record_event(
        session,
        actor,
        "taxonomy.version_added",
        project_id=project.id,
        entity_type="policy_version",
        entity_id=pv.version,
        details={"name": spec.name, "codes": [p.code for p in spec.policies]},
    )
    return pv, True


def policy_version_as_dict(pv: PolicyVersion) -> dict[str, Any]:
    return {
        "version": pv.version,
        "name": pv.name,
        "created_at": pv.created_at.isoformat(),
        "created_by": pv.created_by,
        "policies": [
            {
                "code": p.code,
                "title": p.title,
                "guideline": p.guideline,
                "severity_scale": p.severity_scale,
                "dsa_category": p.dsa_category,
                "dsa_enforcement": p.dsa_enforcement,
            }
            for p in pv.policies
        ],
    }


def load_taxonomy_version(
    session: Session, project: Project, actor: Actor, raw: bytes, source: str
) -> int:
    """Add a policy taxonomy version from an uploaded JSON file (admins); its version number."""
    require_project_role(session, actor, project, Role.admin, action="load a policy taxonomy")
    pv, _created = add_policy_version(
        session, project, parse_taxonomy_json(raw, source=source), actor
    )
    return pv.version


def taxonomy_versions(session: Session, project: Project, actor: Actor) -> list[dict[str, Any]]:
    """Every version of the project's taxonomy, oldest first, for leads, engineers and admins."""
    require_project_role(
        session,
        actor,
        project,
        Role.lead,
        Role.engineer,
        Role.admin,
        action="view taxonomy versions",
    )
    return [policy_version_as_dict(pv) for pv in list_policy_versions(session, project)]
