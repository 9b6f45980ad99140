"""Every benchmark file's header: date, command, machine and the load average before and after."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.bench import results


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[tuple[float, ...]]]:
    """os.getloadavg answers from this list in turn, so before and after are told apart."""
    queue = [(0.5, 0.41, 0.3), (6.25, 3.1, 1.0)]
    monkeypatch.setattr(results.os, "getloadavg", lambda: queue.pop(0))
    monkeypatch.setenv("WORKBENCH_BENCHMARKS_DIR", str(tmp_path / "benchmarks"))
    yield queue


def test_result_header_records_the_load_average_at_the_start_and_when_written(
    loads: list[tuple[float, ...]], tmp_path: Path
) -> None:
    results.mark_run_start()
    path = results.write_result("probe", {"x": 1}, command="workbench bench probe")
    stored = json.loads(path.read_text())
    assert stored["load_average"] == {"before": [0.5, 0.41, 0.3], "after": [6.25, 3.1, 1.0]}
    assert stored["command"] == "workbench bench probe" and stored["results"] == {"x": 1}
    assert {"date", "machine"} <= set(stored)
    assert (tmp_path / "benchmarks" / "probe-latest.json").read_text() == path.read_text()
    assert loads == []


def test_result_header_says_none_where_the_system_has_no_load_average(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def unavailable() -> tuple[float, float, float]:
        raise OSError("no load average here")

    monkeypatch.setattr(results.os, "getloadavg", unavailable)
    monkeypatch.setenv("WORKBENCH_BENCHMARKS_DIR", str(tmp_path))
    results.mark_run_start()
    stored = json.loads(results.write_result("probe", {}).read_text())
    assert stored["load_average"] == {"before": None, "after": None}


def test_a_result_written_without_latest_leaves_the_latest_file_alone(
    loads: list[tuple[float, ...]], tmp_path: Path
) -> None:
    results.mark_run_start()
    path = results.write_result("al/margin", {"x": 2}, latest=False)
    assert path.parent == tmp_path / "benchmarks" / "al"
    assert not (tmp_path / "benchmarks" / "al" / "margin-latest.json").exists()
