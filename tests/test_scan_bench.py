"""`workbench bench scan` end to end on a tiny labelled CSV: it serves `workbench api` as its own
process, scans text and JPEGs, and reports latency with no 5xx and no lost scan records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_bench_scan_reports_latency_and_loses_no_record(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_BENCHMARKS_DIR", str(tmp_path / "benchmarks"))
    data = tmp_path / "texts.csv"
    rows = [f"{i},{0 if i % 3 == 0 else 2},text number {i}" for i in range(30)]
    data.write_text("id,class,tweet\n" + "\n".join(rows) + "\n")
    result = cli.json(
        "bench", "scan", "--data", str(data), "--seconds", "1", "--jpeg-scans", "2",
        "--bank-hashes", "5", "--clients", "2",
    )  # fmt: skip
    assert result["server_5xx"] == 0, result["server_log_tail"]
    assert result["lost_records"] == 0
    assert result["text"]["n"] > 0 and result["text"]["p95_ms"] >= result["text"]["p50_ms"]
    assert result["jpeg_640x480"]["n"] == 2
    written = json.loads((tmp_path / "benchmarks" / "scan-latest.json").read_text())
    assert written["results"]["clients"] == 2 and written["load_average"]["before"]
