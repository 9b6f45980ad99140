"""`workbench dsa statements`: one checked statement of reasons per decision in force, JSON
lines with the Transparency Database's field names, batches of at most 100; one invalid
statement and nothing is written, each problem named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from builders import make_items, make_project
from sqlalchemy import select

from workbench.db.database import open_database
from workbench.db.models import EnforcementDecision
from workbench.services.audit import Actor
from workbench.services.report import decisions
from workbench.services.report.sor_rules import validate_statement

D = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


def _seed(n: int) -> None:
    """`n` scan decisions on consecutive days from 1 October 2026, in project `p`."""
    db = open_database()
    try:
        with db.sessions.begin() as s:
            p = make_project(s)
            for k, item in enumerate(make_items(s, p, [f"t{k}" for k in range(n)])):
                item.language = "de-AT"
                decisions.record_scan_decision(
                    s, p, item, policy_code="spam", scan_ref=f"m{k}", actor=Actor.system(),
                    facts="Matched a spam campaign.", when=D + timedelta(hours=k),
                )  # fmt: skip
    finally:
        db.dispose()


def test_statements_are_valid_json_lines_in_batches_of_at_most_100(
    cli: Any, home: Path, tmp_path: Path
) -> None:
    _seed(205)
    out, batches = tmp_path / "sor.jsonl", tmp_path / "batches"
    result = cli.json("dsa", "statements", "-p", "p", "--out", out, "--batch-dir", batches)
    assert result["statements"] == 205
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 205 and all(validate_statement(s) == [] for s in lines)
    assert lines[0]["content_language"] == "DE"
    assert lines[0]["decision_ground"] == "DECISION_GROUND_INCOMPATIBLE_CONTENT"
    assert lines[0]["automated_detection"] == "Yes"
    assert len({s["puid"] for s in lines}) == 205
    sizes = [len(json.loads(f.read_text())["statements"]) for f in sorted(batches.iterdir())]
    assert sizes == [100, 100, 5]
    # The same run again writes the same bytes.
    again = tmp_path / "again.jsonl"
    cli.json("dsa", "statements", "-p", "p", "--out", again)
    assert again.read_bytes() == out.read_bytes()


def test_since_and_until_pick_decisions_by_application_date(
    cli: Any, home: Path, tmp_path: Path
) -> None:
    _seed(72)  # 1, 2 and 3 October, 24 each
    out = tmp_path / "sor.jsonl"
    result = cli.json("dsa", "statements", "-p", "p", "--out", out, "--since", "2026-10-02",
                      "--until", "2026-10-02")  # fmt: skip
    assert result["statements"] == 24
    dates = {json.loads(line)["application_date"] for line in out.read_text().splitlines()}
    assert dates == {"2026-10-02"}
    bad = cli("dsa", "statements", "-p", "p", "--out", out, "--since", "2 Oct")
    assert bad.exit_code == 1 and "--since" in bad.stderr


def test_an_invalid_statement_is_named_and_nothing_is_written(
    cli: Any, home: Path, tmp_path: Path
) -> None:
    _seed(3)
    db = open_database()
    try:
        with db.sessions.begin() as s:
            rows = list(s.scalars(select(EnforcementDecision).order_by(EnforcementDecision.id)))
            rows[1].ground, rows[1].legal_ground = "illegal", None  # left half-changed
            rows[2].facts = "x" * 5001
            bad = sorted([rows[1].puid, rows[2].puid])
    finally:
        db.dispose()
    out, batches = tmp_path / "sor.jsonl", tmp_path / "batches"
    out.write_text("earlier export\n")
    result = cli("dsa", "statements", "-p", "p", "--out", out, "--batch-dir", batches, "--json")
    assert result.exit_code == 1
    assert "2 decision(s) cannot make a valid statement" in result.stderr
    assert bad[0] in result.stderr and bad[1] in result.stderr
    assert "illegal_content_legal_ground" in result.stderr and "decision_facts" in result.stderr
    problems = json.loads(result.stdout)["problems"]
    assert {p["external_id"] for p in problems} == set(bad)
    assert out.read_text() == "earlier export\n" and not batches.exists()


def test_the_cli_lists_overrides_and_takes_complaints(cli: Any, home: Path, tmp_path: Path) -> None:
    _seed(2)
    listed = cli.json("dsa", "decisions", "-p", "p")["decisions"]
    assert [d["restriction"] for d in listed] == ["demoted", "demoted"]
    puid = listed[0]["puid"]
    missing = cli("dsa", "override", "-p", "p", puid, "--ground", "illegal", "--note", "law")
    assert missing.exit_code == 1 and "legal_ground" in missing.stderr
    changed = cli.json("dsa", "override", "-p", "p", puid, "--ground", "illegal",
                       "--legal-ground", "§ 263 StGB", "--restriction", "removed",
                       "--note", "fraud")  # fmt: skip
    assert (changed["ground"], changed["restriction"]) == ("illegal", "removed")
    appeal = cli.json("dsa", "appeal", "-p", "p", puid, "--complaint", "not fraud")
    assert appeal["status"] == "open" and appeal["queue_entry_id"]
    bad = cli("dsa", "appeal-decide", "-p", "p", str(appeal["id"]), "--outcome", "maybe",
              "--note", "x")  # fmt: skip
    assert bad.exit_code == 1 and "upheld" in bad.stderr
    done = cli.json("dsa", "appeal-decide", "-p", "p", str(appeal["id"]), "--outcome",
                    "reversed", "--note", "a satire account")  # fmt: skip
    assert done["status"] == "reversed"
    out = tmp_path / "sor.jsonl"
    assert cli.json("dsa", "statements", "-p", "p", "--out", out)["statements"] == 1
