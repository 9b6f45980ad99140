"""A project for the evaluation tests: three classes in overlapping clusters (so metrics are
neither 0 nor 1), fused vectors, labels on a training part, and a label file for the rest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from builders import make_project
from quality_builders import Labels, add_fused_vectors

from workbench.db.database import Database
from workbench.services.audit import Actor
from workbench.services.train.rounds import run_round_now

CLASSES = ["hate", "none", "spam"]
SYSTEM = Actor.system()


def noisy_vectors(
    per_class: int, seed: int = 0, spread: float = 2.2
) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, (len(CLASSES), 8)) * spread
    rows, truth = [], []
    for k, cls in enumerate(CLASSES):
        rows.append(centres[k] + rng.normal(0.0, 1.0, (per_class, 8)))
        truth += [cls] * per_class
    return np.vstack(rows).astype(np.float32), truth


def build(
    db: Database,
    *,
    spread: float = 2.2,
    per_class: int = 40,
    trained_share: float = 0.5,
    languages: tuple[str, ...] = ("en",),
) -> list[str]:
    """Items x0..; the first `trained_share` of each class labelled by alice; returns the truth."""
    vectors, truth = noisy_vectors(per_class, spread=spread)
    with db.sessions.begin() as s:
        p = make_project(s)
        lab = Labels(s, p)
        items = [lab.item(f"x{n}") for n in range(len(truth))]
        for n, item in enumerate(items):
            item.language = languages[n % len(languages)]
            item.meta = {"country": "de" if n % 3 else "fr"}
        add_fused_vectors(s, db.settings, p, items, vectors)
        for n, cls in enumerate(truth):
            if n % per_class < per_class * trained_share:
                lab.label(f"x{n}", "alice", cls)
    return truth


def label_file(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A JSONL label file of (external_id, reviewer, class) rows."""
    with path.open("w") as f:
        for ext, reviewer, cls in rows:
            if cls == "none":
                rec = {"external_id": ext, "reviewer": reviewer, "decision": "not_violating"}
            else:
                rec = {"external_id": ext, "reviewer": reviewer, "decision": "violating",
                       "policies": [cls]}  # fmt: skip
            f.write(json.dumps(rec) + "\n")
    return path


def held_out_rows(
    truth: list[str], per_class: int = 40, trained_share: float = 0.5
) -> list[tuple[str, str, str]]:
    return [
        (f"x{n}", "ref", cls)
        for n, cls in enumerate(truth)
        if n % per_class >= per_class * trained_share
    ]


def train(db: Database) -> None:
    run = run_round_now(db, "p", SYSTEM, refill_queue=False, worker="test")
    assert run.status.value == "succeeded", run
