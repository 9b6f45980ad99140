"""`workbench bank ...` and `workbench bench pdq` through the real app: --json objects, exit 1
with a located message on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CLI
from sqlalchemy import select

from workbench.bench.pdq import scene
from workbench.db.database import Database
from workbench.db.models import AuditEvent
from workbench.services.scan.banks import match


@pytest.fixture(autouse=True)
def fresh_index() -> None:
    match.invalidate()


def test_bank_cli_create_add_list_disable_and_enable(
    cli: CLI, db: Database, tmp_path: Path
) -> None:
    picture = tmp_path / "known.jpg"
    scene(3).save(picture, "JPEG", quality=90)
    created = cli.json("bank", "create", "KNOWN_BAD", "--action", "block", "--ratio", "0.5")
    assert created == {"name": "KNOWN_BAD", "action": "block", "matching_enabled_ratio": 0.5}
    added = cli.json("bank", "add", "KNOWN_BAD", "--file", str(picture), "--content-id", "c1")
    assert [s["signal_type"] for s in added["signals"]] == ["pdq", "sha256", "md5"]
    assert added["signals"][0]["quality"] >= 50 and len(added["signals"][0]["signal"]) == 64
    again = cli("bank", "add", "KNOWN_BAD", "--file", str(picture))
    assert again.exit_code == 1 and "already in bank 'KNOWN_BAD'" in again.stderr
    [bank] = cli.json("bank", "list")["banks"]
    assert bank["signals"] == {"pdq": 1, "sha256": 1, "md5": 1} and bank["enabled"]
    off = cli.json("bank", "disable", "KNOWN_BAD", "--until", "2999-01-01")
    assert off["until"].startswith("2999-01-01T00:00:00")
    assert cli.json("bank", "list")["banks"][0]["enabled"] is False
    entry = cli.json("bank", "disable", "KNOWN_BAD", "--content-id", "c1", "--until", "2999-01-01")
    assert entry["signals"] == 3
    assert cli.json("bank", "enable", "KNOWN_BAD") == {"bank": "KNOWN_BAD", "enabled": True}
    assert cli.json("bank", "list")["banks"][0]["enabled"] is True
    human = cli("bank", "list")
    assert human.exit_code == 0 and "KNOWN_BAD" in human.stdout and "pdq 1" in human.stdout
    with db.sessions() as s:
        actions = set(s.scalars(select(AuditEvent.action).where(AuditEvent.action.like("bank.%"))))
        assert actions == {"bank.create", "bank.add", "bank.disable", "bank.disable_content",
                           "bank.enable"}  # fmt: skip


def test_bank_cli_import_export_round_trip(cli: CLI, db: Database, tmp_path: Path) -> None:
    source = tmp_path / "list.csv"
    source.write_text(
        "signal_type,signal,content_id,note\n"
        f"pdq,{'AB' * 32},x1,from a partner\n"
        f"sha256,{'0' * 64},,\n"
        f'md5,{"f" * 32},x3,"quoted, with comma"\n'
    )
    cli.json("bank", "create", "PARTNER", "--action", "review")
    assert cli.json("bank", "import", "PARTNER", str(source)) == {
        "bank": "PARTNER", "added": 3, "already_present": 0,
    }  # fmt: skip
    assert cli.json("bank", "import", "PARTNER", str(source))["already_present"] == 3
    out = tmp_path / "out.csv"
    assert cli.json("bank", "export", "PARTNER", str(out))["signals"] == 3
    assert out.read_text() == source.read_text().replace("AB" * 32, "ab" * 32)


def test_bank_cli_bad_csv_names_each_line_and_adds_nothing(cli: CLI, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(f"signal_type,signal,content_id,note\npdq,{'0' * 64},,\npdq,123,,\nmd5,zz,,\n")
    cli.json("bank", "create", "STRICT", "--action", "block")
    data = cli.json("bank", "import", "STRICT", str(bad), expect=1)
    assert "2 bad line(s); nothing was imported" in data["error"]
    assert [(p["line"], p["field"]) for p in data["problems"]] == [(3, "signal"), (4, "signal")]
    result = cli("bank", "import", "STRICT", str(bad))
    assert f"{bad}:3, field 'signal': a pdq signal is 64 hex digits" in result.stderr
    assert cli.json("bank", "list")["banks"][0]["signals"] == {}
    named = cli.json("bank", "create", "lower", "--action", "block", expect=1)
    assert "^[A-Z0-9_]+$" in named["error"]


def test_bench_pdq_writes_results_with_recall_against_brute_force(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_BENCHMARKS_DIR", str(tmp_path))
    out = cli.json("bench", "pdq", "--n", "3000", "--queries", "60", "--images", "6")
    assert out["stored_hashes"] == 3000 and out["queries"]["with_a_true_match"] > 0
    assert out["workbench"]["recall_vs_brute_force"] == 1.0
    assert out["hma_faiss_multihash"]["recall_vs_brute_force"] == 1.0
    for key in (
        "build_seconds",
        "lookup_p50_ms",
        "lookup_p95_ms",
        "index_memory_mb",
        "peak_rss_mb",
    ):
        assert key in out["workbench"]
    written = json.loads((tmp_path / "pdq-latest.json").read_text())
    assert written["results"] == out and written["load_average"]["after"] is not None
