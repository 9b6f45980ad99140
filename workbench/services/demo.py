"""The demo: a project from the shipped fixtures, demo users, embedded, trained, queue filled.

Every step is idempotent, so running the demo twice changes nothing the second time. It runs
only on an empty database or one it set up: it sets the demo users' passwords and roles.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workbench.db.database import Database
from workbench.db.models import (
    EnforcementDecision,
    EntryStatus,
    Item,
    PrevalencePlan,
    Project,
    QueueEntry,
    Role,
    User,
)
from workbench.errors import WorkbenchError
from workbench.progress import no_progress
from workbench.services.audit import Actor
from workbench.services.evaluate.members import frozen_sets
from workbench.services.evaluate.prevalence import STRATEGY as PREVALENCE_STRATEGY
from workbench.services.evaluate.prevalence import PlanRequest, plan_prevalence
from workbench.services.evaluate.registry import latest_comparison
from workbench.services.evaluate.sets import create_from_labels
from workbench.services.ingest.write import ingest_path
from workbench.services.labels.import_ import import_labels
from workbench.services.membership import add_member
from workbench.services.projects import find_project, get_or_create_project, get_project
from workbench.services.queue.lease import lease_next
from workbench.services.report.appeals import decide_appeal, file_appeal
from workbench.services.report.decisions import backfill_decisions
from workbench.services.review.flow import ReviewForm, skip, submit_review
from workbench.services.select.batch import select_batch
from workbench.services.status import project_status
from workbench.services.train.rounds import run_round_now
from workbench.services.train.train import champion
from workbench.services.users import add_user, generate_password, set_password, set_role
from workbench.services.vectors.embed import embed_project

DEMO_PROJECT = "demo"
DEMO_GOLDEN = "golden"
# The prevalence measurement the evaluation page shows: a stratified sample of the pool for one
# policy, reviewed by the demo reviewers (their answer: the golden file's majority where it has
# the item); items it has no answer for stay queued, as in a measurement still under way.
DEMO_PREVALENCE_POLICY = "spam"
DEMO_PREVALENCE_N = 40
DEMO_PREVALENCE_STRATA = 4
DEMO_REVIEWERS = ("alice", "bob", "carol")
DEMO_USERS: list[tuple[str, Role]] = [
    ("admin", Role.admin),
    ("lena", Role.lead),
    ("eddie", Role.engineer),
    ("alice", Role.reviewer),
    ("bob", Role.reviewer),
    ("carol", Role.reviewer),
]


def fixture_reviewers(labels: Path) -> set[str]:
    """The reviewers the fixtures' labels name: the import makes them users (no password)."""
    names: set[str] = set()
    for line in labels.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except ValueError:
            continue  # the label import names the bad line
        if isinstance(row, dict) and isinstance(row.get("reviewer"), str):
            names.add(row["reviewer"])
    return names


def refuse_unless_demo_database(session: Session, reviewers: set[str]) -> None:
    """Refuse a database that holds users or projects the demo did not make.

    Why: the demo gives its users known passwords and roles; on a real database an account
    named `admin` or `alice` would be taken over.
    """
    demo_names = {name for name, _ in DEMO_USERS} | reviewers
    others = sorted(set(session.scalars(select(User.name))) - demo_names)
    projects = sorted(set(session.scalars(select(Project.name))) - {DEMO_PROJECT})
    if not others and not projects:
        return
    found = []
    if others:
        found.append(f"users {_some(others)}")
    if projects:
        found.append(f"projects {_some(projects)}")
    raise WorkbenchError(
        f"this is not a demo database: it holds {' and '.join(found)}. The demo sets its "
        "users' passwords and roles, so it runs only on an empty database or one it set up "
        "(point WORKBENCH_HOME or WORKBENCH_DATABASE_URL at a new one)"
    )


def _some(names: list[str], shown: int = 10) -> str:
    text = ", ".join(repr(n) for n in names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _credentials(db: Database) -> tuple[Path, dict[str, str]]:
    path = db.settings.resolved_home / "demo-credentials.json"
    if path.exists():
        return path, json.loads(path.read_text())
    return path, {}


def ensure_demo_users(db: Database, actor: Actor) -> list[dict[str, str]]:
    """Demo accounts with passwords kept in WORKBENCH_HOME (demo only: never in production),
    each a member of the demo project once it exists, so every role can open it."""
    path, known = _credentials(db)
    out = []
    with db.sessions.begin() as s:
        project = find_project(s, DEMO_PROJECT)
        for name, role in DEMO_USERS:
            user = s.scalar(select(User).where(User.name == name))
            password = known.get(name) or generate_password()
            if user is None:
                user = add_user(s, name, role, actor, password=password)
            elif user.password_hash is None or name not in known:
                # e.g. a reviewer first seen in the imported labels, without a password. The
                # audited paths: each change leaves an event, and a reset ends open sessions.
                set_password(s, user, password, actor)
                if user.role is not role:
                    set_role(s, user, role, actor)
            if project is not None:
                add_member(s, project, user, actor)
            known[name] = password
            out.append({"name": name, "role": role.value, "password": password})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(known, indent=2))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return out


DEMO_DECISIONS = 6


def demo_decisions(session: Session, project: Project, actor: Actor) -> int:
    """A few enforcement decisions from the imported labels and one complaint, decided by the
    lead, so the DSA statements and report have something to show. Idempotent."""
    if session.scalar(select(EnforcementDecision.id).where(
            EnforcementDecision.project_id == project.id).limit(1)) is not None:  # fmt: skip
        return 0
    made = backfill_decisions(session, project, actor, limit=DEMO_DECISIONS)
    if not made:
        return 0
    appeal = file_appeal(
        session, project, actor, made[0].puid, "The account holder says this was a joke."
    )
    lead = session.scalar(select(User).where(User.name == "lena"))
    decider = Actor.for_user(lead.name, lead.id, lead.role) if lead else actor
    decide_appeal(session, project, decider, appeal.id, "upheld", "Re-reviewed: the call stands.")
    return len(made) + 1


def _ingest_evaluation_items(
    db: Database, folder: Path, actor: Actor, say: Callable[[str], None], progress: Any
) -> None:
    """Generated comments (scripts/make_eval_fixtures.py) and the labels of the first round."""
    ingest = ingest_path(
        db.sessions, db.settings, folder / "items.jsonl", DEMO_PROJECT, actor, progress=progress
    )
    say(f"evaluation items: {ingest.as_dict().get('items_added', 0)} added")
    with db.sessions.begin() as s:
        imported = import_labels(
            s, get_project(s, DEMO_PROJECT), folder / "labels-round1.jsonl", actor
        )
    say(f"labels for the first round: {imported.imported}")


def _evaluation_round(db: Database, folder: Path, actor: Actor, say: Callable[[str], None]) -> None:
    """A frozen golden set, more labels, and a second round: its challenger is judged against
    the first round's champion on the golden set, so the evaluation page has a verdict to show."""
    with db.sessions.begin() as s:
        project = get_project(s, DEMO_PROJECT)
        if not any(es.name == DEMO_GOLDEN for es in frozen_sets(s, project)):
            made = create_from_labels(s, project, DEMO_GOLDEN, folder / "golden.jsonl", actor)
            say(f"evaluation set {DEMO_GOLDEN!r}: {made['n_items']} items, frozen")
        imported = import_labels(s, project, folder / "labels-round2.jsonl", actor)
        say(f"labels for the second round: {imported.imported}")
        versions = project_status(s, project)["model_versions"]
    if versions < 2:
        outcome = run_round_now(
            db, DEMO_PROJECT, actor, trigger="demo", refill_queue=False, worker="demo"
        )
        with db.sessions() as s:
            comparison = latest_comparison(s, get_project(s, DEMO_PROJECT))
        verdict = comparison["verdict"] if comparison else "no comparison"
        say(f"retrain: round {outcome.status.value}; challenger on {DEMO_GOLDEN!r}: {verdict}")


def _golden_answers(path: Path) -> dict[str, ReviewForm]:
    """External id -> the majority answer of the golden file's reviewers (ties left out)."""
    votes: dict[str, Counter[tuple[str, tuple[str, ...]]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            answer = (row["decision"], tuple(row.get("policies") or ()))
            votes.setdefault(row["external_id"], Counter())[answer] += 1
    out = {}
    for ext, counter in votes.items():
        (top, n), *rest = counter.most_common()
        if not rest or rest[0][1] < n:
            # A violating label needs its reason, as on the review page.
            why = "demo: the golden set's majority" if top[0] == "violating" else ""
            out[ext] = ReviewForm(decision=top[0], policies=top[1], rationale=why)
    return out


def _prevalence_measurement(
    db: Database, folder: Path, actor: Actor, say: Callable[[str], None]
) -> None:
    """Draw the demo's prevalence plan once and let the demo reviewers review its queue through
    the review flow (lease, submit or skip), so the page shows a design-based estimate."""
    with db.sessions() as s:
        project = get_project(s, DEMO_PROJECT)
        planned = s.scalar(
            select(PrevalencePlan.id)
            .where(
                PrevalencePlan.project_id == project.id,
                PrevalencePlan.policy == DEMO_PREVALENCE_POLICY,
            )
            .limit(1)
        )
    if planned is not None:
        return
    plan = plan_prevalence(
        db,
        PlanRequest(
            project=DEMO_PROJECT,
            policy=DEMO_PREVALENCE_POLICY,
            n=DEMO_PREVALENCE_N,
            out=db.settings.resolved_home / f"demo-prevalence-{DEMO_PREVALENCE_POLICY}.csv",
            strata=DEMO_PREVALENCE_STRATA,
        ),
        actor,
    )
    answers = _golden_answers(folder / "golden.jsonl")
    reviewed = 0
    with db.sessions.begin() as s:
        project = get_project(s, DEMO_PROJECT)
        for name in DEMO_REVIEWERS:
            user = s.scalar(select(User).where(User.name == name))
            if user is None:
                continue
            reviewer = Actor.for_user(user.name, user.id, user.role)
            # Bounded: every lease ends in a submission or a skip, and a reviewer never gets
            # an entry twice, so the queue runs dry for them within this many leases.
            for _ in range(plan["queued"] + 1):
                lease = lease_next(s, project, user)
                if lease is None:
                    break
                entry = s.get_one(QueueEntry, lease.entry_id)
                ext = s.get_one(Item, entry.item_id).external_id
                if entry.strategy != PREVALENCE_STRATEGY or ext not in answers:
                    skip(s, project, reviewer, lease.id, "demo: no answer for this item")
                    continue
                submit_review(s, project, reviewer, lease.id, answers[ext])
                reviewed += 1
    say(
        f"prevalence of {DEMO_PREVALENCE_POLICY!r}: plan {plan['plan']} samples {plan['n']} "
        f"items ({plan['already_labelled']} labelled already); the demo reviewers reviewed "
        f"{reviewed} of the {plan['queued']} queued"
    )


def _pending_outside(session: Session, project: Project, strategy: str) -> int:
    """Pending queue entries other than `strategy`'s."""
    return (
        session.scalar(
            select(func.count()).where(
                QueueEntry.project_id == project.id,
                QueueEntry.status == EntryStatus.pending,
                QueueEntry.strategy.is_distinct_from(strategy),
            )
        )
        or 0
    )


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
        refuse_unless_demo_database(s, fixture_reviewers(labels))
        _, created = get_or_create_project(s, DEMO_PROJECT, actor)
    say(f"project {DEMO_PROJECT!r} " + ("created" if created else "already there"))
    ingest = ingest_path(db.sessions, db.settings, manifest, DEMO_PROJECT, actor, progress=progress)
    say(f"ingest: {ingest.as_dict().get('items_added', 0)} items added")
    with db.sessions.begin() as s:
        imported = import_labels(s, get_project(s, DEMO_PROJECT), labels, actor)
    say(f"labels: {getattr(imported, 'imported', imported)}")
    evaluation = fixtures / "evaluation"
    if (evaluation / "items.jsonl").exists():
        _ingest_evaluation_items(db, evaluation, actor, say, progress)
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
    if (evaluation / "items.jsonl").exists():
        _evaluation_round(db, evaluation, actor, say)
    # Before the prevalence reviews: their violating labels make decisions of their own, and
    # the demo's decisions and appeal come only while a project has none.
    with db.sessions.begin() as s:
        made = demo_decisions(s, get_project(s, DEMO_PROJECT), actor)
    say(f"dsa: {made} enforcement decision(s) and appeal(s) made")
    if (evaluation / "items.jsonl").exists():
        # Before the selection: leases go best first, and the selection's entries rank higher.
        _prevalence_measurement(db, evaluation, actor, say)
    with db.sessions() as s:
        queued = _pending_outside(s, get_project(s, DEMO_PROJECT), PREVALENCE_STRATEGY)
    if queued == 0:
        sel = select_batch(db, DEMO_PROJECT, None, 20, actor)
        say(f"select: queued {sel['queued']} items ({sel['by_strategy']})")
    with db.sessions() as s:
        status = project_status(s, get_project(s, DEMO_PROJECT))
    say(
        "scan API: `workbench serve` starts it on port 8600 (docs at /docs); make a key with "
        "`workbench apikey create NAME --scope scan`"
    )
    return {"project": DEMO_PROJECT, "status": status, "users": users}
