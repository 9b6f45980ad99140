"""`workbench bench` commands that need no database, at their smallest sizes on data made here:
each prints one JSON object and stores the same result, with the machine, under
WORKBENCH_BENCHMARKS_DIR. Figures are checked for sense, never for speed."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI

VOTES = [[3, 0, 0], [0, 3, 0], [0, 0, 3], [1, 2, 0], [0, 1, 2]]  # hate, offensive, neither


@pytest.fixture
def benchmarks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "benchmarks"
    monkeypatch.setenv("WORKBENCH_BENCHMARKS_DIR", str(folder))
    return folder


def crowd_csv(path: Path, n: int) -> Path:
    """A file shaped like Davidson's labeled_data.csv: vote counts, the majority class, a tweet."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["count", "hate_speech", "offensive_language", "neither", "class", "tweet"])
        for i in range(n):
            votes = VOTES[i % len(VOTES)]
            cls = max(range(3), key=lambda k: votes[k])
            w.writerow([sum(votes), *votes, cls, f"tweet {i} about topic {i % 7} and {i % 11}"])
    return path


def stored(folder: Path, name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((folder / f"{name}-latest.json").read_text())
    assert payload["benchmark"] == name and payload["machine"]["cpu_count"]
    return payload


def test_bench_knn_measures_recall_against_exact_search(
    cli: CLI, tmp_path: Path, benchmarks: Path
) -> None:
    data = crowd_csv(tmp_path / "texts.csv", 80)
    out = cli.json(
        "bench", "knn", "--data", str(data), "--size", "1000", "--queries", "10",
        "--fit-texts", "64",
    )  # fmt: skip
    assert (out["vectors"], out["queries"], out["k"]) == (1000, 10, 10)
    assert out["source"]["fitted_on_texts"] == 64
    assert 0.0 <= out["threads_1"]["recall_at_10"] <= 1.0
    assert out["threads_1"]["p50_ms"] <= out["threads_1"]["p95_ms"]
    assert stored(benchmarks, "knn")["results"] == out


def test_bench_embed_text_compares_a_variant_with_fp32(
    cli: CLI, tmp_path: Path, benchmarks: Path
) -> None:
    data = crowd_csv(tmp_path / "texts.csv", 10)
    out = cli.json(
        "bench", "embed-text", "--data", str(data), "--limit", "4", "--variants", "onnx-int8",
        "--no-through-embed",
    )  # fmt: skip
    assert out["texts"] == 4 and set(out["variants"]) == {"fp32", "onnx-int8"}
    assert out["variants"]["fp32"]["min_cos_to_fp32"] == pytest.approx(1.0, abs=1e-4)
    int8 = out["variants"]["onnx-int8"]
    assert 0.9 < int8["min_cos_to_fp32"] <= int8["mean_cos_to_fp32"] <= 1.0001
    assert "workbench_embed" not in out
    assert stored(benchmarks, "embed-text")["results"] == out


def test_bench_embed_media_times_each_offline_default(cli: CLI, benchmarks: Path) -> None:
    out = cli.json("bench", "embed-media", "--count", "1", "--seconds", "1")
    assert set(out["modalities"]) == {"image", "audio", "video", "speech_to_text"}
    assert [out["modalities"][m]["items"] for m in ("image", "audio", "video")] == [1, 1, 1]
    assert out["modalities"]["audio"]["clips_per_s"] > 0
    assert out["seconds_per_clip"] == 1.0
    assert stored(benchmarks, "embed-media")["results"] == out


def test_bench_agreement_reads_crowd_votes_and_aggregates(
    cli: CLI, tmp_path: Path, benchmarks: Path
) -> None:
    data = crowd_csv(tmp_path / "votes.csv", 40)
    out = cli.json("bench", "agreement", "--data", str(data))
    crowd = out["crowd"]
    assert (crowd["n_tweets"], crowd["n_votes"], crowd["votes_per_tweet"]) == (40, 120, {"3": 40})
    # Three of five rows are unanimous, two split 2-1: 3/5 + 2/5 * 1/3 of pairs agree.
    assert crowd["percent_agreement"] == pytest.approx(3 / 5 + 2 / 5 / 3)
    low, high = crowd["krippendorff_alpha_ci"]
    assert low <= crowd["krippendorff_alpha"] <= high
    assert out["aggregation"]["majority"]["agreement_with_published_class"] == 1.0
    assert stored(benchmarks, "agreement-davidson")["results"] == out


def test_bench_agreement_names_a_missing_vote_column(cli: CLI, tmp_path: Path) -> None:
    data = tmp_path / "votes.csv"
    data.write_text("count,hate_speech,neither,class\n3,1,2,2\n")
    out = cli.json("bench", "agreement", "--data", str(data), expect=1)
    assert "lacks the column(s) offensive_language" in out["error"]
    assert out["problems"] == [
        {"reason": "column missing", "line": None, "external_id": None,
         "field": "offensive_language", "file": str(data)},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "args", "why"),
    [
        (3, [], "3 texts; the mixture needs at least 64"),
        (100, ["--text-column", "nope"], "columns expected but not found: ['nope']"),
    ],
)
def test_bench_knn_names_data_it_cannot_use(
    cli: CLI, tmp_path: Path, rows: int, args: list[str], why: str
) -> None:
    data = tmp_path / "texts.csv"
    data.write_text("tweet\n" + "".join(f"text {n}\n" for n in range(rows)))
    out = cli.json("bench", "knn", "--data", str(data), "--size", "1000", *args, expect=1)
    assert out["error"].startswith(f"{data}: ") and out["error"].endswith(why)


def test_bench_agreement_scale_times_synthetic_labels(cli: CLI, benchmarks: Path) -> None:
    out = cli.json("bench", "agreement-scale", "--labels", "1000", "--reviewers", "10")
    assert (out["n_labels"], out["n_reviewers"]) == (1000, 10)
    assert 0 < out["n_items"] < 1000 and len(out["seconds"]) == 3
    assert out["seconds_best"] == min(out["seconds"])
    assert -1.0 <= out["krippendorff_alpha"] <= 1.0
    assert stored(benchmarks, "agreement-scale")["results"] == out
