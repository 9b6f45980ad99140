"""`workbench bench eval` on a small Davidson-shaped file the test makes: the result has every
figure, stays in range, is written through results.py; bad input exits 1 naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

WORDS = {
    "hate": ["slurx", "vermin", "subhuman", "go back", "filth"],
    "offensive": ["damn", "idiot", "trash", "stupid", "hell"],
    "none": ["sunny", "coffee", "game", "music", "weekend"],
}


def _davidson_like(path: Path, n: int = 900, seed: int = 0) -> Path:
    """Tweets of three classes (hate ~15 %) with overlapping vocabularies, and vote counts."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        cls = rng.choice(["hate", "offensive", "none"], p=[0.15, 0.45, 0.40])
        # Words mostly from the item's class, some from the others: an imperfect model.
        words = [
            rng.choice(WORDS[cls] if rng.random() < 0.6 else WORDS[rng.choice(list(WORDS))])
            for _ in range(4)
        ]
        votes = {"hate": 0, "offensive": 0, "none": 0}
        votes[cls] = 3
        rows.append({
            "count": 3, "hate_speech": votes["hate"], "offensive_language": votes["offensive"],
            "neither": votes["none"], "class": {"hate": 0, "offensive": 1, "none": 2}[cls],
            "tweet": f"t{i} " + " ".join(words),
        })  # fmt: skip
    pd.DataFrame(rows).to_csv(path)
    return path


def test_bench_eval_writes_every_figure(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WORKBENCH_BENCHMARKS_DIR", str(tmp_path / "benchmarks"))
    data = _davidson_like(tmp_path / "labeled_data.csv")
    r = cli.json(
        "bench", "eval", "--data", data, "--reps", "10", "--plan-n", "60", "--strata", "4",
        "--evalset-n", "200", "--resamples", "5", "--items", "2000",
    )  # fmt: skip
    cov = r["coverage"]
    for key in ("precision_wilson", "recall_wilson", "precision_bootstrap", "recall_bootstrap",
                "prevalence_stratified", "prevalence_simple_random"):  # fmt: skip
        assert 0.0 <= cov[key]["coverage"] <= 1.0 and cov[key]["reps"] == 10
    width = r["prevalence_width"]
    assert width["n"] == 60 and sum(width["allocation"]) == 60 and width["strata"] == 4
    assert width["mean_width_stratified"] > 0 and width["mean_width_simple_random"] > 0
    assert 0.05 < r["pool"]["prevalence"] < 0.3
    assert set(r["time_100k"]["seconds"]) == {"bootstrap_1", "bootstrap_5"}
    written = json.loads((tmp_path / "benchmarks" / "eval-latest.json").read_text())
    assert written["benchmark"] == "eval" and written["results"]["policy"] == "hate"
    assert written["load_average"]["after"] is not None


def test_bench_eval_bad_data_exits_1(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli.json("bench", "eval", "--data", tmp_path / "missing.csv", expect=1)
    assert "missing.csv" in r["error"]
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"count": [3], "tweet": ["x"]}).to_csv(bad)
    r = cli.json("bench", "eval", "--data", bad, expect=1)
    assert "lacks the column" in r["error"] and "hate_speech" in r["error"]
