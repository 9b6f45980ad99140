"""Rows for every table, written per revision as the table first appears, to fill a database
that migrations must carry across without losing or changing a row.

Rows are written against the columns each revision creates (not the ORM models), so a revision's
rows still insert when the models have moved on. They include what a table rebuild can damage:
self references (duplicates, supersedes, model parents), ON DELETE CASCADE and SET NULL children.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, Connection, MetaData, Table, inspect, text

from workbench.db import models  # noqa: F401  (registers every table on Base.metadata)
from workbench.db.base import Base

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)

Rows = list[tuple[str, list[dict[str, Any]]]]


# fmt: off
def _item(i: int, duplicate_of: int | None = None) -> dict[str, Any]:
    return {
        "id": i, "project_id": 1, "external_id": f"e{i}", "text": f"text {i}", "language": "en",
        "metadata": {"n": i}, "modalities": ["text"], "content_hash": f"{i:064d}",
        "duplicate_of_id": duplicate_of, "revision": 1, "source": "fixture",
        "created_at": T0, "updated_at": T0,
    }


def _label(i: int, item: int, supersedes: int | None = None) -> dict[str, Any]:
    return {
        "id": i, "project_id": 1, "item_id": item, "reviewer_id": 1, "policy_version_id": 1,
        "decision": "violating", "policies": ["hate"], "severity": 2, "rationale": "r",
        "spans": [{"start": 0, "end": 4}], "confidence": 0.9, "time_spent_ms": 1200,
        "source": "human", "idempotency_key": f"k{i}", "supersedes_id": supersedes,
        "created_at": T0,
    }
# fmt: on


# Revision -> tables it creates, parents before children, with their rows. One row per line or
# two reads better than one field per line, hence fmt: off.
# fmt: off
ROWS: dict[str, Rows] = {
    "0001_foundation": [
        ("projects", [{"id": 1, "name": "p", "settings": {"batch_size": 5}, "created_at": T0}]),
        ("users", [
            {"id": 1, "name": "rev", "role": "reviewer", "password_hash": "h", "disabled": False,
             "created_at": T0},
            {"id": 2, "name": "lead", "role": "lead", "password_hash": None, "disabled": False,
             "created_at": T0},
            {"id": 3, "name": "gone", "role": "reviewer", "password_hash": "h", "disabled": True,
             "created_at": T0},
        ]),
        ("audit_events", [
            {"id": 1, "at": T0, "actor": "rev", "actor_user_id": 1, "action": "label.create",
             "project_id": 1, "entity_type": "label", "entity_id": "1", "details": {"a": 1}},
        ]),
        ("items", [_item(1), _item(2), _item(3, duplicate_of=1)]),
        ("policy_versions", [
            {"id": 1, "project_id": 1, "version": 1, "name": "v1", "checksum": "c" * 64,
             "created_at": T0, "created_by": "lead"},
        ]),
        ("policies", [
            {"id": 1, "policy_version_id": 1, "position": 0, "code": "hate", "title": "Hate",
             "guideline": "g", "severity_scale": [{"level": 1, "name": "low"}],
             "dsa_category": None},
        ]),
        ("labels", [_label(1, 1), _label(2, 2), _label(3, 1, supersedes=1), _label(4, 3)]),
        ("media_assets", [
            {"id": 1, "item_id": 1, "modality": "image", "sha256": "a" * 64,
             "mime_type": "image/png", "size_bytes": 10, "width": 2, "height": 2,
             "duration_seconds": None, "store_path": "aa/aa/a.png", "original_name": "a.png"},
            {"id": 2, "item_id": 2, "modality": "audio", "sha256": "b" * 64,
             "mime_type": "audio/wav", "size_bytes": 20, "width": None, "height": None,
             "duration_seconds": 1.5, "store_path": "bb/bb/b.wav", "original_name": None},
        ]),
    ],
    "0002_embeddings": [
        ("embedding_spaces", [
            {"id": 1, "project_id": 1, "name": "text", "encoder_id": "minilm",
             "encoder_version": "v1", "dim": 4, "created_at": T0},
        ]),
        ("embeddings", [
            {"id": i, "space_id": 1, "item_id": i, "item_revision": 1, "encoder_version": "v1",
             "status": "ok", "error": None, "segment": "s0", "row": i - 1, "created_at": T0}
            for i in (1, 2, 3)
        ]),
    ],
    "0003_active_learning": [
        ("training_rounds", [
            {"id": 1, "project_id": 1, "number": 1, "trigger": "manual", "requested_by": "lead",
             "status": "succeeded", "progress": 1.0, "log": "done", "error": None,
             "worker": "w", "labels_at_request": 4, "refill_queue": True,
             "model_version_id": None, "created_at": T0, "started_at": T0, "finished_at": LATER},
        ]),
        ("model_versions", [
            {"id": 1, "project_id": 1, "version": 1, "round_id": 1, "parent_id": None,
             "head": "logreg", "params": {"c": 1}, "classes": ["a", "b"], "metrics": {"f1": 0.5},
             "calibrated": False, "calibration_note": None, "space_id": 1, "trained_on": 4,
             "artifact_path": "m/1", "scores_path": "s/1", "status": "retired",
             "created_at": T0},
            {"id": 2, "project_id": 1, "version": 2, "round_id": None, "parent_id": 1,
             "head": "logreg", "params": {}, "classes": ["a", "b"], "metrics": {},
             "calibrated": True, "calibration_note": "n", "space_id": 1, "trained_on": 4,
             "artifact_path": "m/2", "scores_path": None, "status": "champion",
             "created_at": LATER},
        ]),
        # A second round that points at a model version: the SET NULL the rebuild could fire.
        ("training_rounds", [
            {"id": 2, "project_id": 1, "number": 2, "trigger": "cli", "requested_by": "lead",
             "status": "succeeded", "progress": 1.0, "log": "", "error": None, "worker": None,
             "labels_at_request": 4, "refill_queue": False, "model_version_id": 2,
             "created_at": LATER, "started_at": None, "finished_at": None},
        ]),
        ("queue_entries", [
            {"id": 1, "project_id": 1, "item_id": 2, "batch": 1, "model_version_id": 2,
             "kind": "selected", "strategy": "margin", "score": 0.5, "reason": "close call",
             "priority": 1.0, "overlap_target": 1, "active_leases": 1, "completed": 0,
             "status": "pending", "created_at": T0},
            {"id": 2, "project_id": 1, "item_id": 1, "batch": 1, "model_version_id": None,
             "kind": "overlap", "strategy": None, "score": None, "reason": None,
             "priority": 0.0, "overlap_target": 2, "active_leases": 0, "completed": 2,
             "status": "done", "created_at": T0},
        ]),
        ("leases", [
            {"id": 1, "entry_id": 1, "reviewer_id": 1, "status": "active", "leased_at": T0,
             "expires_at": LATER, "finished_at": None, "label_id": None, "skip_reason": None},
            {"id": 2, "entry_id": 2, "reviewer_id": 1, "status": "submitted", "leased_at": T0,
             "expires_at": LATER, "finished_at": T0, "label_id": 1, "skip_reason": None},
        ]),
    ],
    "0004_review": [
        ("login_attempts", [{"id": 1, "user_name": "rev", "at": T0, "success": True}]),
        ("reviewer_settings", [
            {"user_id": 1, "blur_images": True, "greyscale_images": False, "exposure_cap": 50,
             "updated_at": T0},
        ]),
        ("user_sessions", [
            {"id": 1, "token_hash": "t" * 64, "user_id": 1, "method": "password",
             "created_at": T0, "last_seen_at": T0, "expires_at": LATER, "revoked_at": None,
             "items_reviewed": 3},
        ]),
        ("wellbeing_flags", [
            {"id": 1, "project_id": 1, "reviewer_id": 1, "item_id": 2, "created_at": T0},
        ]),
        ("review_drafts", [
            {"id": 1, "project_id": 1, "reviewer_id": 1, "item_id": 2, "lease_id": 1,
             "supersedes_label_id": 2, "data": {"decision": "unsure"}, "started_at": T0,
             "updated_at": T0},
        ]),
    ],
    "0005_label_quality": [
        ("adjudications", [
            {"id": 1, "project_id": 1, "item_id": 1, "status": "resolved",
             "reason": "disagreement", "reason_detail": None, "created_by": "system",
             "created_at": T0, "decision": "violating", "policies": ["hate"], "severity": 3,
             "policy_version_id": 1, "note": "n", "closed_by": "lead", "closed_by_user_id": 2,
             "closed_at": LATER},
        ]),
        ("gold_items", [
            {"id": 1, "project_id": 1, "item_id": 3, "policy_version_id": 1,
             "decision": "not_violating", "policies": [], "severity": None, "note": None,
             "created_by": "lead", "created_at": T0, "updated_at": T0, "retired_at": None,
             "retired_by": None},
        ]),
    ],
    # The upgrade adds every enabled user to every project; a disabled user is added by hand.
    "0010_project_membership": [
        ("project_members", [
            {"project_id": 1, "user_id": 3, "added_at": LATER, "added_by": "admin"},
        ]),
    ],
    "0011_hash_banks": [
        ("hash_banks", [
            {"id": 1, "name": "KNOWN_BAD", "action": "block", "matching_enabled_ratio": 1.0,
             "disabled": False, "disabled_until": None, "version": 3, "created_by": "system",
             "created_at": T0, "updated_at": LATER},
            {"id": 2, "name": "TRIAL_REVIEW", "action": "review", "matching_enabled_ratio": 0.25,
             "disabled": True, "disabled_until": LATER, "version": 1, "created_by": "lead",
             "created_at": T0, "updated_at": T0},
        ]),
        ("hash_bank_contents", [
            {"id": 1, "bank_id": 1, "signal_type": "pdq", "signal": "f" * 64,
             "signal_key": "f" * 64, "content_id": "c1", "note": "n", "quality": 100,
             "disabled_until": None, "created_by": "system", "created_at": T0},
            {"id": 2, "bank_id": 1, "signal_type": "sha256", "signal": "a" * 64,
             "signal_key": "a" * 64, "content_id": None, "note": None, "quality": None,
             "disabled_until": LATER, "created_by": "system", "created_at": T0},
            {"id": 3, "bank_id": 2, "signal_type": "vpdq", "signal": ("0" * 64 + "\n") * 3,
             "signal_key": "b" * 64, "content_id": "v1", "note": None, "quality": 90,
             "disabled_until": None, "created_by": "lead", "created_at": T0},
        ]),
    ],
    "0012_scan_api": [
        ("api_keys", [
            {"id": 1, "name": "uploader", "key_hash": "c" * 64, "scopes": ["scan"],
             "created_by": "system", "created_at": T0, "revoked_at": None, "last_used_at": LATER},
            {"id": 2, "name": "old", "key_hash": "d" * 64, "scopes": ["scan", "banks"],
             "created_by": "system", "created_at": T0, "revoked_at": LATER, "last_used_at": None},
        ]),
        ("scans", [
            {"id": 1, "project_id": 1, "source": "api", "external_id": "up-1",
             "content_hash": "e" * 64, "item_id": 1,
             "decision": "review", "reasons": [{"source": "model", "policy": "hate",
             "score": 0.7, "threshold": 0.5, "model_version": 1}],
             "automated_detection": True, "automated_decision": False, "degraded": False,
             "model_version_id": None, "latency_ms": 12.5, "api_key_id": 1, "created_at": T0},
            {"id": 2, "project_id": 1, "source": "sweep", "external_id": None,
             "content_hash": None, "item_id": None,
             "decision": "allow", "reasons": [], "automated_detection": False,
             "automated_decision": True, "degraded": True, "model_version_id": None,
             "latency_ms": None, "api_key_id": None, "created_at": LATER},
        ]),
        ("scan_sweeps", [
            {"id": 1, "project_id": 1, "since": T0, "last_item_id": 3,
             "counts": {"allow": 2, "review": 1}, "started_at": T0, "finished_at": None},
        ]),
    ],
    "0015_enforcement_decisions": [
        ("enforcement_decisions", [
            {"id": 1, "project_id": 1, "item_id": 1, "puid": "wb-1-1", "origin": "label",
             "label_id": 1, "adjudication_id": None, "scan_ref": None, "decided_by": "lead",
             "decided_by_user_id": None, "policy_code": "hate", "policy_version_id": 1,
             "restriction": "removed", "restriction_other": None, "ground": "incompatible",
             "legal_ground": None, "terms_clause": "Terms 4.1", "ground_explanation": "e",
             "category": "ILLEGAL_OR_HARMFUL_SPEECH", "content_types": ["text"],
             "content_date": "2026-01-01", "application_date": "2026-01-02",
             "territorial_scope": ["DE"], "language": "en", "facts": "f",
             "automated_detection": False, "automated_decision": "not",
             "source_type": "voluntary", "created_at": T0, "revoked_at": None,
             "revoked_reason": None},
        ]),
        ("decision_appeals", [
            {"id": 1, "project_id": 1, "decision_id": 1, "complaint": "c", "filed_by": "u",
             "filed_at": T0, "status": "upheld", "queue_entry_id": None, "decided_at": T0,
             "decided_by": "lead", "decided_by_user_id": None, "label_id": None, "note": "n"},
        ]),
    ],
    "0013_evaluation": [
        ("evaluation_sets", [
            {"id": 1, "project_id": 1, "name": "golden", "version": 1, "kind": "sample",
             "status": "frozen", "source": {"n": 2, "overlap": 3, "seed": 0},
             "created_by": "lead", "created_at": T0, "frozen_at": LATER, "retired_at": None},
            {"id": 2, "project_id": 1, "name": "public", "version": 1, "kind": "labels_file",
             "status": "retired", "source": {"file": "labels.jsonl", "sha256": "ab"},
             "created_by": "system", "created_at": T0, "frozen_at": T0, "retired_at": LATER},
        ]),
        ("evaluation_members", [
            {"id": 1, "set_id": 1, "item_id": 1, "reference": "hate", "stratum": "en"},
            {"id": 2, "set_id": 1, "item_id": 2, "reference": "none", "stratum": "en"},
            {"id": 3, "set_id": 2, "item_id": 3, "reference": None, "stratum": None},
        ]),
    ],
    "0014_prevalence_samples": [
        ("prevalence_plans", [
            {"id": 1, "project_id": 1, "policy": "hate", "model_version_id": 1,
             "model_version": 1, "threshold": 0.5, "threshold_source": "default 0.5",
             "n_requested": 2, "seed": 0, "population": 3,
             "strata": [{"stratum": 0, "score_low": 0.1, "score_high": 0.9, "population": 3,
                         "allocated": 2}],
             "created_by": "system", "created_at": T0},
        ]),
        ("prevalence_samples", [
            {"id": 1, "plan_id": 1, "item_id": 1, "stratum": 0, "inclusion_probability": 0.5,
             "score": 0.9},
            {"id": 2, "plan_id": 1, "item_id": 2, "stratum": 0, "inclusion_probability": 0.5,
             "score": 0.1},
        ]),
    ],
}
# fmt: on


def table_at_revision(conn: Connection, name: str) -> Table:
    """The table as the database has it now, typed like the models where a column exists there
    (JSON, aware datetimes), so the same Python values insert on SQLite and Postgres."""
    model = Base.metadata.tables.get(name)
    columns = []
    for col in inspect(conn).get_columns(name):
        known = model is not None and col["name"] in model.c
        columns.append(Column(col["name"], model.c[col["name"]].type if known else col["type"]))
    return Table(name, MetaData(), *columns)


def fill(conn: Connection, revision: str) -> None:
    for name, rows in ROWS.get(revision, []):
        conn.execute(table_at_revision(conn, name).insert(), rows)


Snapshot = dict[str, tuple[list[str], list[tuple[Any, ...]]]]


def snapshot(conn: Connection) -> Snapshot:
    """Every row of every table (alembic_version aside), in a stable order."""
    out: Snapshot = {}
    for name in sorted(inspect(conn).get_table_names()):
        if name == "alembic_version":
            continue
        result = conn.execute(text(f'SELECT * FROM "{name}"'))
        cols = list(result.keys())
        out[name] = (cols, sorted((tuple(r) for r in result), key=repr))
    return out


def lost_or_changed(before: Snapshot, after: Snapshot) -> list[str]:
    """Tables present in both whose rows differ on the columns both have, counts first."""
    problems = []
    for name in sorted(before.keys() & after.keys()):
        (bcols, brows), (acols, arows) = before[name], after[name]
        common = [c for c in bcols if c in acols]
        bi, ai = [bcols.index(c) for c in common], [acols.index(c) for c in common]
        bproj = sorted((tuple(r[i] for i in bi) for r in brows), key=repr)
        aproj = sorted((tuple(r[i] for i in ai) for r in arows), key=repr)
        if len(brows) != len(arows):
            problems.append(f"{name}: {len(brows)} rows -> {len(arows)}")
        elif bproj != aproj:
            problems.append(f"{name}: same count ({len(brows)}), changed values")
    return problems
