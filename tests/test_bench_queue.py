"""`workbench bench queue` and `bench queue-latency` at toy size on SQLite and Postgres: the
result's shape and what it says of the database (never the timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from workbench.config import Settings
from workbench.db.database import open_database
from workbench.db.engine import make_engine
from workbench.db.migrate import upgrade
from workbench.db.models import Label, Lease, LeaseStatus, User


def _bench(url: str, tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    if not url.startswith("sqlite"):
        upgrade(make_engine(url))  # Postgres is upgraded on purpose, never implicitly
    env = {**os.environ, "WORKBENCH_DATABASE_URL": url, "WORKBENCH_HOME": str(tmp_path / "home"),
           "WORKBENCH_BENCHMARKS_DIR": str(tmp_path / "benchmarks")}  # fmt: skip
    exe = Path(sys.executable).parent / "workbench"
    run = subprocess.run(
        [str(exe), "bench", *args, "--json"], env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    return run.returncode, json.loads(run.stdout), run.stderr


def _leases_and_labels_of(url: str, reviewer: str) -> dict[str, int]:
    db = open_database(Settings(database_url=url))
    try:
        with db.sessions() as s:
            user_id = s.scalar(select(User.id).where(User.name == reviewer))
            statuses = list(s.scalars(select(Lease.status).where(Lease.reviewer_id == user_id)))
            labels = s.scalar(
                select(func.count()).select_from(Label).where(Label.reviewer_id == user_id)
            )
    finally:
        db.dispose()
    expired = sum(1 for st in statuses if st == LeaseStatus.expired)
    return {"leases": len(statuses), "expired": expired, "labels": labels or 0}


@pytest.mark.slow
def test_queue_throughput_bench_loses_and_duplicates_nothing_with_killed_reviewers(
    database_url: str, tmp_path: Path
) -> None:
    rc, result, err = _bench(
        database_url, tmp_path, "queue", "--project", "bq", "--workers", "4", "--items", "400",
        "--kill-fraction", "0.25", "--lease-seconds", "10",
    )  # fmt: skip
    assert rc == 0, err
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    assert result["backend"] == backend
    # The autovacuum setting is recorded next to the figures (statistics are gathered anyway).
    assert (result["postgres_autovacuum"] is None) == (backend == "sqlite")
    # One reviewer (a quarter of four) is killed holding its first batch: it leases before the
    # others start, so the kill happens on every run.
    assert result["killed"] == 1 and result["workers_failed"] == 0
    assert result["leases_expired"] >= 20
    # Its 20 leases expired (reclaimed, never submitted) and the others labelled those items.
    killed = _leases_and_labels_of(database_url, f"bench-{result['run']}-r0")
    assert killed == {"leases": 20, "expired": 20, "labels": 0}
    assert result["acknowledged"] == result["labels_in_db"] == 400
    assert (result["duplicates"], result["lost"], result["labels_without_audit"]) == (0, 0, 0)
    assert result["complete"] is True
    stored = json.loads((tmp_path / "benchmarks" / f"queue-{backend}-latest.json").read_text())
    assert stored["results"]["run"] == result["run"]
    # The command's own process recorded the load it started under and the load when it wrote.
    assert [len(stored["load_average"][k]) for k in ("before", "after")] == [3, 3]


def test_queue_latency_bench_tops_up_what_earlier_runs_labelled(
    database_url: str, tmp_path: Path
) -> None:
    rc, result, _ = _bench(database_url, tmp_path, "queue-latency", "--sizes", "100",
                           "--iterations", "10")  # fmt: skip
    assert rc == 1
    assert "--sizes" in result["error"] and "at least 115" in result["error"]

    for _ in range(2):  # the second run finds 115 of the 120 entries labelled and adds items
        rc, result, err = _bench(database_url, tmp_path, "queue-latency", "--sizes", "120",
                                 "--iterations", "10")  # fmt: skip
        assert rc == 0, err
        (row,) = result["sizes"]
        assert row["size"] == 120 and row["pending_entries"] >= 120
        assert row["lease_and_submit"]["p50_ms"] <= row["lease_and_submit"]["p95_ms"]
        assert row["batched"]["batches"] == 5
    assert row["items"] == 120 + 115
