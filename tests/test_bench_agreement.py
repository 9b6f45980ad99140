"""`workbench bench agreement` and `agreement-scale` at toy size: a small crowd file shaped like
Davidson et al.'s, and a few thousand synthetic labels. Checks the figures' shape and the ones a
crowd this simple fixes; never the timings."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from workbench.bench.agreement import DAVIDSON_CLASSES, synthetic_labels


def write_crowd_csv(path: Path) -> Path:
    """40 unanimous tweets (3 votes) and 10 split 2 to 1, with their published class."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["", "count", *DAVIDSON_CLASSES, "class", "tweet"])
        for i in range(50):
            cls = i % 3
            votes = [0, 0, 0]
            votes[cls] = 3
            if i >= 40:
                votes[cls], votes[(cls + 1) % 3] = 2, 1
            w.writerow([i, 3, *votes, cls, f"tweet {i}"])
    return path


@pytest.fixture
def out_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("WORKBENCH_BENCHMARKS_DIR", str(tmp_path / "benchmarks"))
    return tmp_path / "benchmarks"


def test_bench_agreement_reports_the_crowd_and_both_aggregations(
    cli: Any, tmp_path: Path, out_dir: Path
) -> None:
    data = write_crowd_csv(tmp_path / "labeled_data.csv")
    out = cli.json("bench", "agreement", "--data", str(data))
    crowd = out["crowd"]
    assert (crowd["n_tweets"], crowd["n_votes"], crowd["votes_per_tweet"]) == (50, 150, {"3": 50})
    # 40 of 50 unanimous, 10 with two of three pairs disagreeing: (40 + 10/3) / 50.
    assert crowd["percent_agreement"] == pytest.approx((40 + 10 / 3) / 50)
    low, high = crowd["krippendorff_alpha_ci"]
    assert low <= crowd["krippendorff_alpha"] <= high
    aggregation = out["aggregation"]
    # Every tweet's majority is its published class.
    assert aggregation["majority"]["agreement_with_published_class"] == 1.0
    assert set(aggregation["dawid_skene"]["label_share"]) == set(DAVIDSON_CLASSES)
    assert (out_dir / "agreement-davidson-latest.json").exists()


def test_bench_agreement_names_a_missing_vote_column(cli: Any, tmp_path: Path) -> None:
    data = tmp_path / "bad.csv"
    data.write_text("count,hate_speech,neither,class\n3,1,2,2\n")
    out = cli.json("bench", "agreement", "--data", str(data), expect=1)
    assert "offensive_language" in out["error"]


def test_bench_agreement_scale_times_the_whole_computation(cli: Any, out_dir: Path) -> None:
    out = cli.json("bench", "agreement-scale", "--labels", "3000", "--reviewers", "20")
    assert out["n_labels"] == 3000 and out["n_reviewers"] == 20
    assert len(out["seconds"]) == 3 and out["seconds_best"] == min(out["seconds"])
    assert 0 < out["krippendorff_alpha"] < 1
    stored = json.loads((out_dir / "agreement-scale-latest.json").read_text())
    assert set(stored["load_average"]) == {"before", "after"}


def test_synthetic_labels_give_one_label_per_reviewer_and_item() -> None:
    labels = synthetic_labels(5000, reviewers=50, seed=3)
    assert len(labels) == 5000
    assert not labels.duplicated(["item_id", "reviewer"]).any()
    assert set(labels["decision"]) <= {"violating", "not_violating", "unsure"}
