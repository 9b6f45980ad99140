"""The demo: a project from the shipped fixtures, demo users, embedded, trained, queue filled.

Every step is idempotent, so running the demo twice changes nothing the second time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from workbench.db.database import Database
from workbench.db.models import Role, User
from workbench.errors import WorkbenchError
from workbench.progress import no_progress
from workbench.services.audit import Actor
from workbench.services.ingest.write import ingest_path
from workbench.services.labels.import_ import import_labels
from workbench.services.projects import get_or_create_project, get_project
from workbench.services.select.batch import select_batch
from workbench.services.status import project_status
from workbench.services.train.rounds import run_round_now
from workbench.services.train.train import champion
from workbench.services.users import add_user, generate_password, hash_password
from workbench.services.vectors.embed import embed_project

DEMO_PROJECT = "demo"
DEMO_USERS: list[tuple[str, Role]] = [
    ("admin", Role.admin),
    ("lena", Role.lead),
    ("eddie", Role.engineer),
    ("alice", Role.reviewer),
    ("bob", Role.reviewer),
    ("carol", Role.reviewer),
]


def _credentials(db: Database) -> tuple[Path, dict[str, str]]:
    path = db.settings.resolved_home / "demo-credentials.json"
    if path.exists():
        return path, json.loads(path.read_text())
    return path, {}


def ensure_demo_users(db: Database, actor: Actor) -> list[dict[str, str]]:
    """Demo accounts with passwords kept in WORKBENCH_HOME (demo only: never in production)."""
    path, known = _credentials(db)
    out = []
    with db.sessions.begin() as s:
        for name, role in DEMO_USERS:
            user = s.scalar(select(User).where(User.name == name))
            password = known.get(name) or generate_password()
            if user is None:
                add_user(s, name, role, actor, password=password)
            elif user.password_hash is None or name not in known:
                # e.g. a reviewer first seen in the imported labels, without a password
                user.password_hash = hash_password(password)
                user.role = role
            known[name] = password
            out.append({"name": name, "role": role.value, "password": password})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(known, indent=2))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return out


def run_demo(
    db: Database,
    fixtures: Path,
    actor: Actor,
    say: Callable[[str], None] = print,
    progress: Any = None,
) -> dict[str, Any]:
    progress = progress or no_progress
    manifest, labels = fixtures / "manifest.jsonl", fixtures / "labels.jsonl"
    for f in (manifest, labels):
        if not f.exists():
            raise WorkbenchError(
                f"{f}: demo fixture missing (run from the repository root, or pass --fixtures)"
            )
    with db.sessions.begin() as s:
        _, created = get_or_create_project(s, DEMO_PROJECT, actor)
    say(f"project {DEMO_PROJECT!r} " + ("created" if created else "already there"))
    ingest = ingest_path(db.sessions, db.settings, manifest, DEMO_PROJECT, actor, progress=progress)
    say(f"ingest: {ingest.as_dict().get('items_added', 0)} items added")
    with db.sessions.begin() as s:
        imported = import_labels(s, get_project(s, DEMO_PROJECT), labels, actor)
    say(f"labels: {getattr(imported, 'imported', imported)}")
    users = ensure_demo_users(db, actor)
    embedded = embed_project(db, DEMO_PROJECT, actor, progress=progress)
    say(f"embed: {embedded.as_dict()['embedded']} vectors, {embedded.failed} failures")
    with db.sessions() as s:
        has_model = champion(s, get_project(s, DEMO_PROJECT)) is not None
    if not has_model:
        outcome = run_round_now(
            db, DEMO_PROJECT, actor, trigger="demo", refill_queue=False, worker="demo"
        )
        say(f"retrain: round {outcome.status.value}")
    with db.sessions() as s:
        queued = project_status(s, get_project(s, DEMO_PROJECT))["queued"]
    if queued == 0:
        sel = select_batch(db, DEMO_PROJECT, None, 20, actor)
        say(f"select: queued {sel['queued']} items ({sel['by_strategy']})")
    with db.sessions() as s:
        status = project_status(s, get_project(s, DEMO_PROJECT))
    return {"project": DEMO_PROJECT, "status": status, "users": users}
