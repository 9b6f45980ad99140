"""`workbench bench al` end to end on a tiny CSV with vote columns, and `bench select`."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workbench.bench import al as al_benchmark
from workbench.encoders.base import Encoder, l2_normalise


class WordHashEncoder(Encoder):
    """A tiny deterministic text encoder (hashed words), so the test needs no model."""

    id = "test-word-hash"
    modality = "text"
    version = "1"
    dim = 32

    # Texts encoded by every instance, so a test can tell whether a run encoded at all.
    texts_encoded = 0

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        WordHashEncoder.texts_encoded += len(batch)
        out = np.zeros((len(batch), self.dim), dtype=np.float32)
        for i, text in enumerate(batch):
            for word in text.split():
                out[i, sum(map(ord, word)) % self.dim] += 1.0
        return l2_normalise(out + 1e-3)


def write_vote_csv(path: Path, n: int = 500, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    words = {"hate": "vermin scum", "offensive": "damn idiot", "neither": "lunch sunny"}
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "hate", "offensive", "neither"])
        for i in range(n):
            cls = rng.choice(3, p=[0.1, 0.4, 0.5])
            name = list(words)[cls]
            votes = rng.multinomial(3, [0.1, 0.1, 0.1] + np.eye(3)[cls] * 0.7)
            votes[cls] = max(votes[cls], 2)
            w.writerow([i, f"{words[name]} item{i % 7} filler{i % 5}", *votes.tolist()])
    return path


@pytest.fixture
def fast_encoder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(al_benchmark, "_default_text_encoder", WordHashEncoder)
    monkeypatch.setattr(WordHashEncoder, "texts_encoded", 0)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("WORKBENCH_BENCHMARKS_DIR", str(tmp_path / "benchmarks"))


def test_bench_al_runs_end_to_end_and_reports_every_strategy(
    cli: Any, tmp_path: Path, fast_encoder: None
) -> None:
    data = write_vote_csv(tmp_path / "votes.csv")
    out = cli.json(
        "bench", "al",
        "--data", str(data),
        "--text-column", "text",
        "--vote-columns", "hate,offensive,neither",
        "--positive", "hate",
        "--seeds", "3",
        "--seed-labels", "20",
        "--budget", "80",
        "--batch", "20",
        "--seed", "1",
        "--test-size", "100",
        "--validation-size", "50",
        "--strategies", "random;margin;cluster_margin;mix:margin=0.5,seals=0.3,random=0.2",
    )  # fmt: skip
    assert 0 < out["full_pool_macro_f1"] <= 1
    assert set(out["strategies"]) == {
        "random",
        "margin",
        "cluster_margin",
        "mix:margin=0.5,seals=0.3,random=0.2",
    }
    for name, s in out["strategies"].items():
        for key in ("aulc_macro_f1", "final_macro_f1", "positives_per_100_reviews"):
            assert set(s[key]) == {"mean", "std"}, (name, key)
        reach = s["labels_to_reach_full_pool"]
        assert reach is None or 20 <= reach <= 80
        assert s["curve_labels"] == [20, 40, 60, 80]
        if name != "margin":
            assert set(s["vs_margin"]["aulc_macro_f1"]) >= {"t_test_p", "wilcoxon_p"}
    mix = out["strategies"]["mix:margin=0.5,seals=0.3,random=0.2"]["chosen_by"]
    assert mix == {"seed": 20, "margin": 30, "seals": 18, "random": 12}
    assert Path(out["plot"]).exists()
    assert (tmp_path / "benchmarks" / "al-latest.json").exists()
    assert WordHashEncoder.texts_encoded == 500  # every row once

    # The vectors were cached: a second run (other strategies and seeds) encodes nothing.
    assert len(list((tmp_path / "cache" / "workbench" / "al-vectors").glob("*.npy"))) == 1
    again = cli.json(
        "bench", "al", "--data", str(data), "--text-column", "text",
        "--vote-columns", "hate,offensive,neither", "--positive", "hate",
        "--seeds", "1", "--seed-labels", "20", "--budget", "40", "--batch", "20",
        "--test-size", "100", "--validation-size", "50", "--strategies", "margin",
    )  # fmt: skip
    assert set(again["strategies"]) == {"margin"}
    assert WordHashEncoder.texts_encoded == 500


def test_bench_al_names_the_row_and_column_of_a_bad_vote_count(
    cli: Any, tmp_path: Path, fast_encoder: None
) -> None:
    data = write_vote_csv(tmp_path / "votes.csv", n=30)
    lines = data.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",many"
    data.write_text("\n".join(lines) + "\n")
    out = cli.json(
        "bench", "al", "--data", str(data), "--text-column", "text",
        "--vote-columns", "hate,offensive,neither", "--positive", "hate",
        expect=1,
    )  # fmt: skip
    assert out["problems"][0]["line"] == 6
    assert out["problems"][0]["field"] == "neither"


def test_bench_al_rejects_a_positive_class_that_is_not_a_vote_column(
    cli: Any, tmp_path: Path, fast_encoder: None
) -> None:
    data = write_vote_csv(tmp_path / "votes.csv", n=30)
    out = cli.json(
        "bench", "al", "--data", str(data), "--text-column", "text",
        "--vote-columns", "hate,offensive,neither", "--positive", "spam",
        expect=1,
    )  # fmt: skip
    assert "'spam' is not one of the vote columns" in out["error"]


def test_simulated_reviewers_answer_in_proportion_to_the_crowd_votes() -> None:
    votes = np.tile([[1, 3, 0]], (20000, 1))
    answers = al_benchmark._draw_answers(votes, np.random.default_rng(0))
    share = np.bincount(answers, minlength=3) / len(answers)
    np.testing.assert_allclose(share, [0.25, 0.75, 0.0], atol=0.01)


def test_bench_select_times_each_strategy_in_its_own_process(
    cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WORKBENCH_BENCHMARKS_DIR", str(tmp_path / "benchmarks"))
    out = cli.json(
        "bench", "select", "--pool-size", "20000", "--dim", "16", "--batch", "20",
        "--labelled", "100", "--strategies", "margin,cluster_margin,st_breaking_ties",
    )  # fmt: skip
    rows = {r["strategy"]: r for r in out["results"]}
    assert set(rows) == {"margin", "cluster_margin", "st_breaking_ties"}
    for r in rows.values():
        assert r.get("error") is None, r
        assert r["pool_size"] == 20000 and r["batch"] == 20 and r["picked"] == 20
        # The round was timed (scoring 20,000 vectors takes well over the 0.1 ms rounding).
        assert r["seconds"] > 0 and r["peak_rss_mb"] > 0
    # cluster_margin clusters in its setup, timed apart; small-text's peers have no setup step.
    assert rows["cluster_margin"]["setup_seconds"] > 0
    assert rows["st_breaking_ties"]["setup_seconds"] == 0


def test_bench_al_reports_each_figure_over_split_seeds_and_writes_a_file_per_configuration(
    cli: Any, tmp_path: Path, fast_encoder: None
) -> None:
    data = write_vote_csv(tmp_path / "votes.csv", n=300)
    common = [
        "bench", "al", "--data", str(data), "--text-column", "text",
        "--vote-columns", "hate,offensive,neither", "--positive", "hate",
        "--seeds", "2", "--seed-labels", "20", "--budget", "60", "--batch", "20",
        "--test-size", "60", "--validation-size", "30", "--strategies", "random;margin",
    ]  # fmt: skip
    out = cli.json(*common, "--split-seeds", "2,3")
    assert out["split_seeds"] == [2, 3] and set(out["per_split"]) == {"2", "3"}
    assert out["config"]["split_seeds"] == [2, 3]
    # The existing keys keep their shape, now over every (split, seed) run: 2 x 2 of them.
    assert set(out["strategies"]["random"]["aulc_macro_f1"]) == {"mean", "std"}
    assert len(out["strategies"]["random"]["aulc_per_seed"]) == 4

    # Each split seed is the same run as a run on that split alone.
    alone = cli.json(*common, "--seed", "3")
    assert alone["split_seeds"] == [3]
    for name in ("random", "margin"):
        assert out["per_split"]["3"]["strategies"][name] == alone["strategies"][name]
    assert out["per_split"]["3"]["full_pool_macro_f1"] == alone["full_pool_macro_f1"]

    spread = out["over_splits"]["random"]
    per_split = [out["per_split"][s]["strategies"]["random"] for s in ("2", "3")]
    aulc = [p["aulc_macro_f1"]["mean"] for p in per_split]
    assert spread["aulc_macro_f1"]["per_split"] == aulc
    assert spread["aulc_macro_f1"]["min"] == round(min(aulc), 4)
    assert spread["aulc_macro_f1"]["max"] == round(max(aulc), 4)
    assert spread["aulc_macro_f1"]["std"] == round(float(np.std(aulc, ddof=1)), 4)
    reach = [p["labels_to_reach_full_pool"] for p in per_split]
    assert spread["labels_to_reach_full_pool"]["per_split"] == reach
    for key in ("final_macro_f1", "positives_per_100_reviews"):
        assert set(spread[key]) == {"mean", "std", "min", "max", "n", "per_split"}
    targets = spread["targets"]
    assert set(targets) == {
        "aulc_above_reference",
        "reach_within_500",
        "positives_twice_reference",
    }
    margin = [p["strategies"]["margin"]["aulc_macro_f1"]["mean"] for p in out["per_split"].values()]
    assert targets["aulc_above_reference"]["per_split"] == [
        a > m for a, m in zip(aulc, margin, strict=True)
    ]
    assert "targets" not in out["over_splits"]["margin"]

    # One file per configuration per run beside the combined one, with the same header.
    bench_dir = tmp_path / "benchmarks"
    combined = sorted(bench_dir.glob("al-2*.json"))
    pieces = sorted((bench_dir / "al").glob("*.json"))
    assert {p.name.rsplit("-", 1)[0] for p in pieces} == {"random", "margin"}
    piece = json.loads(next(p for p in pieces if p.name.startswith("random")).read_text())
    assert piece["load_average"].keys() == {"before", "after"}
    assert piece["results"]["strategy"] == "random"
    assert set(piece["results"]["strategies"]) == {"random"}
    assert piece["results"]["config"]["run_beside"] == ["random", "margin"]
    assert piece["results"]["combined"] in {c.name for c in combined}


def test_bench_al_refuses_a_seed_and_split_seeds_together(
    cli: Any, tmp_path: Path, fast_encoder: None
) -> None:
    data = write_vote_csv(tmp_path / "votes.csv", n=30)
    out = cli.json("bench", "al", "--data", str(data), "--seed", "1", "--split-seeds", "2,3",
                   expect=1)  # fmt: skip
    assert "not both" in out["error"]


def test_configuration_slug_names_a_mix_as_a_file_and_keeps_names_apart() -> None:
    slug = al_benchmark.configuration_slug
    assert (
        slug("mix:entropy=0.6,seals/top_positive=0.4") == "mix-entropy-0.6-seals-top_positive-0.4"
    )
    assert slug("seals/top_positive") != slug("seals")
