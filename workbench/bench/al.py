"""Active-learning simulation: simulated reviewers answer from each item's own crowd votes."""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.results import benchmarks_dir, write_result
from workbench.errors import Problem, WorkbenchError
from workbench.progress import ProgressFactory, no_progress
from workbench.services.ingest.tabular import iter_records
from workbench.services.select.strategies import SelectionContext, make_strategy
from workbench.services.train.heads import make_head


def limit_threads(threads: int) -> Any:
    """Cap BLAS, OpenMP, FAISS and torch threads; returns the threadpoolctl limiter to keep.

    On a shared machine, spinning OpenMP and BLAS threads waiting for a busy core made small
    FAISS and numpy calls an order of magnitude slower (k-means on 5,000 x 32: 7.4 s with two
    threads, 0.4 s with one, measured under load), so the benchmarks take a thread count.
    """
    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(threads)
    torch = sys.modules.get("torch")  # only when loaded: importing torch costs seconds
    if torch is not None:
        torch.set_num_threads(threads)
    return threadpool_limits(threads)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def vector_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "workbench" / "al-vectors"


def _default_text_encoder() -> Any:
    # The registered ONNX MiniLM is several times faster; the torch one is the fp32 reference.
    try:
        from workbench.encoders.registry import get_encoder

        return get_encoder("minilm-l6-v2")
    except Exception:
        from workbench.encoders.text import MiniLMTorchEncoder

        return MiniLMTorchEncoder()


def cached_text_vectors(
    path: Path,
    text_column: str,
    texts: Sequence[str],
    *,
    encoder: Any = None,
    progress: ProgressFactory = no_progress,
) -> np.ndarray:
    """Vectors of `texts`, cached outside the repository by file sha256 + encoder version."""
    enc = encoder or _default_text_encoder()
    key = f"{enc.id}|{enc.version}"
    tag = hashlib.sha256(key.encode()).hexdigest()[:12]
    col = hashlib.sha256(text_column.encode()).hexdigest()[:8]
    target = vector_cache_dir() / f"{file_sha256(path)[:24]}-{col}-{tag}.npy"
    if target.exists():
        vectors = np.load(target, mmap_mode="r")
        if vectors.shape[0] == len(texts):
            return np.asarray(vectors, dtype=np.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    bar = progress(total=len(texts), desc="embedding texts")
    chunks = []
    step = 2048
    # Each finished chunk is kept, so an interrupted run resumes instead of starting over.
    parts = target.with_suffix(".parts")
    parts.mkdir(exist_ok=True)
    for start in range(0, len(texts), step):
        part = parts / f"{start:09d}-{step}.npy"
        if part.exists():
            chunk = np.load(part)
        else:
            chunk = enc.encode(list(texts[start : start + step])).astype(np.float32)
            np.save(part.with_suffix(".tmp.npy"), chunk)
            os.replace(part.with_suffix(".tmp.npy"), part)
        chunks.append(chunk)
        bar.update(min(step, len(texts) - start))
    bar.close()
    vectors = np.concatenate(chunks).astype(np.float32)
    tmp = target.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, target)
    for part in parts.glob("*.npy"):
        part.unlink()
    parts.rmdir()
    return vectors


@dataclass(frozen=True)
class VoteData:
    """Texts with crowd votes: `votes[i, j]` reviewers put item i in class j."""

    texts: list[str]
    votes: np.ndarray
    classes: list[str]
    positive: int

    @property
    def majority(self) -> np.ndarray:
        # Ties go to the first column named, so the reference label never depends on chance.
        return np.argmax(self.votes, axis=1)


def load_vote_csv(
    path: Path, text_column: str, vote_columns: Sequence[str], positive: str
) -> VoteData:
    """Read a CSV with a text column and one vote-count column per class, every row checked."""
    name = str(path)
    if len(vote_columns) < 2:
        raise WorkbenchError(
            f"--vote-columns: expected at least two class columns, found {list(vote_columns)}"
        )
    if positive not in vote_columns:
        raise WorkbenchError(
            f"--positive {positive!r} is not one of the vote columns {list(vote_columns)}"
        )
    texts: list[str] = []
    votes: list[list[int]] = []
    problems: list[Problem] = []
    checked_header = False
    for rec in iter_records(path, "csv"):
        if isinstance(rec, Problem):
            problems.append(rec)
            continue
        if not checked_header:
            missing = [c for c in [text_column, *vote_columns] if c not in rec.data]
            if missing:
                raise WorkbenchError(
                    f"{name}:1: missing columns {missing}; the header has {sorted(rec.data)}"
                )
            checked_header = True
        row: list[int] = []
        bad = False
        for col in vote_columns:
            raw = str(rec.data[col]).strip()
            try:
                value = int(raw)
            except ValueError:
                value = -1
            if value < 0:
                problems.append(
                    Problem(
                        file=name,
                        line=rec.line,
                        field=col,
                        reason=f"expected a vote count (0 or more), found {raw!r}",
                    )
                )
                bad = True
                break
            row.append(value)
        if bad:
            continue
        if sum(row) == 0:
            problems.append(
                Problem(file=name, line=rec.line, reason="no votes in any class column")
            )
            continue
        texts.append(str(rec.data[text_column]))
        votes.append(row)
    if problems:
        raise WorkbenchError(f"{name}: {len(problems)} rows cannot be used", problems)
    if not texts:
        raise WorkbenchError(f"{name}: no rows")
    return VoteData(
        texts=texts,
        votes=np.asarray(votes, dtype=np.int64),
        classes=list(vote_columns),
        positive=list(vote_columns).index(positive),
    )


@dataclass(frozen=True)
class ALConfig:
    """One simulation. Label counts include the seed set."""

    strategies: tuple[str, ...] = ("random", "margin", "cluster_margin")
    n_seeds: int = 10
    seed: int = 0
    seed_labels: int = 100
    budget: int = 2000
    batch: int = 100
    test_size: int = 5000
    validation_size: int = 2000
    head: str = "logistic"
    head_params: dict[str, Any] = field(default_factory=dict)
    reference: str = "margin"
    threads: int = 1
    jobs: int = 1
    # The whole comparison runs once per split seed (each fixes the test and validation
    # splits); empty means the one split of `seed`. Seeds used while choosing a configuration
    # must not be among them when the final figures are reported.
    split_seeds: tuple[int, ...] = ()


def _draw_answers(votes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One simulated reviewer per item: a draw from that item's own crowd votes."""
    cum = np.cumsum(votes, axis=1)
    u = rng.random(len(votes)) * cum[:, -1]
    return (u[:, None] >= cum).sum(axis=1)


def _full_proba(head: Any, x: np.ndarray, k: int) -> np.ndarray:
    """Probabilities in all k class columns, zero for classes the head has not seen yet."""
    p = head.predict_proba(x)
    out = np.zeros((x.shape[0], k), dtype=np.float32)
    out[:, np.asarray(head.classes_, dtype=np.int64)] = p
    return out


def _scores(proba: np.ndarray, truth: np.ndarray, k: int, positive: int) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, f1_score, recall_score

    pred = np.argmax(proba, axis=1)
    is_pos = truth == positive
    return {
        "macro_f1": float(
            f1_score(truth, pred, labels=list(range(k)), average="macro", zero_division=0)
        ),
        "recall_positive": float(recall_score(is_pos, pred == positive, zero_division=0)),
        "ap_positive": float(average_precision_score(is_pos, proba[:, positive]))
        if is_pos.any()
        else 0.0,
    }


def _split(n: int, config: ALConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed random test and validation splits (from --seed); the rest is the pool."""
    rng = np.random.default_rng([config.seed, 7919])
    order = rng.permutation(n)
    n_test = min(config.test_size, n // 5)
    n_val = min(config.validation_size, n // 10)
    if n - n_test - n_val < config.budget:
        raise WorkbenchError(
            f"a pool of {n - n_test - n_val} items after the test ({n_test}) and validation "
            f"({n_val}) splits is smaller than the budget of {config.budget} labels"
        )
    return order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]


def _one_run(
    strategy_name: str,
    x_pool: np.ndarray,
    answers: np.ndarray,
    majority_pool: np.ndarray,
    seed_set: np.ndarray,
    evals: dict[str, tuple[np.ndarray, np.ndarray]],
    data: VoteData,
    config: ALConfig,
    run_seed: int,
    cache: dict[str, Any],
) -> dict[str, Any]:
    """One strategy, one seed: label counts, metrics per round, who was found."""
    k = len(data.classes)
    names = np.asarray(data.classes, dtype=object)
    strategy = make_strategy(strategy_name)
    rng = np.random.default_rng([config.seed, run_seed, 101])
    labelled = list(seed_set.tolist())
    chooser: list[str] = ["seed"] * len(labelled)
    curve: list[dict[str, Any]] = []
    while True:
        idx = np.asarray(labelled, dtype=np.int64)
        head = make_head(config.head, random_state=run_seed, **config.head_params)
        head.fit(x_pool[idx], answers[idx])
        point: dict[str, Any] = {"labels": len(labelled)}
        for split, (xs, ys) in evals.items():
            for metric, value in _scores(_full_proba(head, xs, k), ys, k, data.positive).items():
                point[f"{split}_{metric}"] = value
        reviews = len(labelled) - len(seed_set)
        found = int((majority_pool[idx[len(seed_set) :]] == data.positive).sum())
        point["positives_found"] = found
        point["positives_per_100_reviews"] = 100.0 * found / reviews if reviews else None
        curve.append(point)
        if len(labelled) >= config.budget:
            break
        ctx = SelectionContext(
            vectors=x_pool,
            labelled=idx,
            labels=names[answers[idx]],
            probabilities=_full_proba(head, x_pool, k),
            classes=list(data.classes),
            positive=data.classes[data.positive],
            rng=rng,
            cache=cache,
        )
        picked = strategy.select(ctx, min(config.batch, config.budget - len(labelled)))
        if len(picked) == 0:
            break
        labelled.extend(picked.indices.tolist())
        chooser.extend(picked.strategies)
    shares = {s: chooser.count(s) for s in sorted(set(chooser))}
    return {"curve": curve, "chosen_by": shares}


def _aulc(xs: np.ndarray, ys: np.ndarray) -> float:
    """Area under the learning curve, normalised by the label range (a mean macro-F1)."""
    if len(xs) < 2:
        return float(ys[0])
    return float(np.trapezoid(ys, xs) / (xs[-1] - xs[0]))


def _first_reach(xs: np.ndarray, ys: np.ndarray, target: float) -> int | None:
    hit = np.flatnonzero(ys >= target)
    return int(xs[hit[0]]) if len(hit) else None


def _mean_std(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}


def _paired_tests(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    from scipy import stats

    diff = a - b
    out: dict[str, Any] = {"mean_difference": float(diff.mean()), "n": len(diff)}
    if len(diff) < 2 or np.allclose(diff, 0):
        out.update(t_test_p=None, wilcoxon_p=None)
        return out
    out["t_test_p"] = float(stats.ttest_rel(a, b).pvalue)
    try:
        out["wilcoxon_p"] = float(stats.wilcoxon(a, b).pvalue)
    except ValueError:
        out["wilcoxon_p"] = None
    return out


def run_al_benchmark(
    vectors: np.ndarray,
    data: VoteData,
    config: ALConfig,
    *,
    progress: ProgressFactory = no_progress,
    plot_path: Path | None = None,
) -> dict[str, Any]:
    """Simulate every strategy over `n_seeds` seeds on fixed splits; summary + curves."""
    limiter = limit_threads(config.threads)
    try:
        return _run_al(vectors, data, config, progress=progress, plot_path=plot_path)
    finally:
        limiter.unregister()


def al_benchmark_on_csv(
    data: Path,
    text_column: str,
    vote_columns: Sequence[str],
    positive: str,
    config: ALConfig,
    *,
    vectors: Path | None = None,
    progress: ProgressFactory = no_progress,
    say: Callable[[str], None] = lambda _message: None,
) -> dict[str, Any]:
    """`bench al` on a CSV of texts and crowd votes: its rows embedded (cached) unless `vectors`
    (a .npy, one row per CSV row) is given, and the learning-curve plot written beside the
    results in benchmarks/."""
    votes = load_vote_csv(data, text_column, vote_columns, positive)
    if config.seed_labels >= config.budget:
        raise WorkbenchError(
            f"--seed-labels {config.seed_labels} must be smaller than --budget {config.budget}"
        )
    if vectors is not None:
        x = np.load(vectors, mmap_mode="r")
    else:
        say(f"{len(votes.texts)} items, classes {votes.classes}; embedding (cached)")
        x = cached_text_vectors(data, text_column, votes.texts, progress=progress)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return run_al_benchmark(
        x, votes, config, progress=progress, plot_path=benchmarks_dir() / f"al-{stamp}.png"
    )


def _run_seed(
    s: int,
    x_pool: np.ndarray,
    votes_pool: np.ndarray,
    majority_pool: np.ndarray,
    evals: dict[str, tuple[np.ndarray, np.ndarray]],
    data: VoteData,
    config: ALConfig,
) -> dict[str, dict[str, Any]]:
    """Every strategy on one seed: the same reviewer answers and seed set for each (paired)."""
    rng = np.random.default_rng([config.seed, s])
    answers = _draw_answers(votes_pool, rng)
    seed_set = rng.choice(len(x_pool), config.seed_labels, replace=False)
    shared: dict[str, Any] = {}
    out: dict[str, dict[str, Any]] = {}
    for name in config.strategies:
        cache = dict(shared)
        out[name] = _one_run(
            name, x_pool, answers, majority_pool, seed_set, evals, data, config, s, cache
        )
        # Label-independent work (clusters, the pool index) is shared across strategies.
        shared.update(
            {key: v for key, v in cache.items() if key.startswith(("kmeans:", "pool_index"))}
        )
    return out


def _prepare_split(vectors: np.ndarray, data: VoteData, config: ALConfig) -> dict[str, Any]:
    """The test, validation and pool splits of `config.seed`, and the full-pool head's scores."""
    k = len(data.classes)
    majority = data.majority
    test, val, pool = _split(len(data.texts), config)
    x_pool = np.ascontiguousarray(vectors[pool], dtype=np.float32)
    evals = {
        "test": (np.asarray(vectors[test], dtype=np.float32), majority[test]),
        "validation": (np.asarray(vectors[val], dtype=np.float32), majority[val]),
    }
    full = make_head(config.head, random_state=config.seed, **config.head_params)
    full.fit(x_pool, majority[pool])
    full_scores = {
        split: _scores(_full_proba(full, xs, k), ys, k, data.positive)
        for split, (xs, ys) in evals.items()
    }
    return {
        "config": config,
        "data": {
            "items": len(data.texts),
            "classes": data.classes,
            "positive": data.classes[data.positive],
            "pool": len(pool),
            "test": len(test),
            "validation": len(val),
            "positive_rate_pool": float((majority[pool] == data.positive).mean()),
        },
        "full_pool": full_scores,
        "args": (x_pool, data.votes[pool], majority[pool], evals, data, config),
    }


def _run_al(
    vectors: np.ndarray,
    data: VoteData,
    config: ALConfig,
    *,
    progress: ProgressFactory,
    plot_path: Path | None,
) -> dict[str, Any]:
    slugs: dict[str, str] = {}
    for name in config.strategies:
        make_strategy(name)  # fail early on a misspelt name, not after an hour
        # Each configuration gets its own result file, so two must not share a file name.
        other = slugs.setdefault(configuration_slug(name), name)
        if other != name:
            raise WorkbenchError(f"strategies {other!r} and {name!r} would share a result file")
    if config.reference not in config.strategies:
        raise WorkbenchError(
            f"the strategies must include {config.reference!r}, the one the tests compare with"
        )
    if vectors.shape[0] != len(data.texts):
        raise WorkbenchError(f"{vectors.shape[0]} vectors for {len(data.texts)} texts")
    split_seeds = split_seeds_of(config)
    splits = {s: _prepare_split(vectors, data, replace(config, seed=s)) for s in split_seeds}
    # Every (split, seed) pair is one task, so the workers stay busy across split seeds.
    tasks = [(split, s) for split in split_seeds for s in range(config.n_seeds)]
    bar = progress(total=len(tasks), desc="split seeds x seeds")
    per_task: list[dict[str, dict[str, Any]]] = []
    if config.jobs <= 1:
        for split, s in tasks:
            per_task.append(_run_seed(s, *splits[split]["args"]))
            bar.update(1)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(
            max_workers=config.jobs,
            mp_context=mp.get_context("spawn"),
            initializer=limit_threads,
            initargs=(config.threads,),
        ) as workers:
            futures = [workers.submit(_run_seed, s, *splits[split]["args"]) for split, s in tasks]
            for f in futures:
                per_task.append(f.result())
                bar.update(1)
    bar.close()
    runs_by_split: dict[int, dict[str, list[dict[str, Any]]]] = {
        split: {name: [] for name in config.strategies} for split in split_seeds
    }
    for (split, _s), seed_runs in zip(tasks, per_task, strict=True):
        for name in config.strategies:
            runs_by_split[split][name].append(seed_runs[name])

    per_split: dict[str, Any] = {}
    pooled: dict[str, list[dict[str, Any]]] = {name: [] for name in config.strategies}
    test_targets: list[float] = []
    val_targets: list[float] = []
    for split in split_seeds:
        full = splits[split]["full_pool"]
        runs = runs_by_split[split]
        per_split[str(split)] = {
            "data": splits[split]["data"],
            "full_pool_macro_f1": full["test"]["macro_f1"],
            "full_pool": full,
            **_summarise(
                runs, replace(config, seed=split), full["test"]["macro_f1"],
                full["validation"]["macro_f1"],
            ),
        }  # fmt: skip
        for name in config.strategies:
            pooled[name].extend(runs[name])
        test_targets += [full["test"]["macro_f1"]] * config.n_seeds
        val_targets += [full["validation"]["macro_f1"]] * config.n_seeds
    # The existing keys summarise every (split, seed) run together; each run is compared with
    # the full-pool head of its own split, the mean curve with the mean of those heads.
    summary = _summarise(pooled, config, np.asarray(test_targets), np.asarray(val_targets))
    first = splits[split_seeds[0]]["data"]
    full_test = float(np.mean([splits[s]["full_pool"]["test"]["macro_f1"] for s in split_seeds]))
    result: dict[str, Any] = {
        "data": {
            **first,
            "positive_rate_pool": float(
                np.mean([splits[s]["data"]["positive_rate_pool"] for s in split_seeds])
            ),
        },
        "config": {
            **asdict(config),
            "strategies": list(config.strategies),
            "split_seeds": list(split_seeds),
        },
        "full_pool_macro_f1": full_test,
        "full_pool": {
            split: {
                metric: float(np.mean([splits[s]["full_pool"][split][metric] for s in split_seeds]))
                for metric in splits[split_seeds[0]]["full_pool"][split]
            }
            for split in ("test", "validation")
        },
        **summary,
        "split_seeds": list(split_seeds),
        "over_splits": over_splits(per_split, config.reference),
        "per_split": per_split,
    }
    if plot_path is not None:
        result["plot"] = str(plot_learning_curves(pooled, full_test, plot_path))
    return result


def split_seeds_of(config: ALConfig) -> tuple[int, ...]:
    """The split seeds a run covers: `split_seeds`, or the one `seed` when none are given."""
    return tuple(config.split_seeds) or (config.seed,)


def _spread(values: Sequence[float | int | None], digits: int = 4) -> dict[str, Any]:
    """Mean, std (ddof 1), min and max over split seeds; None values (never reached) are
    kept in `per_split` and counted, not averaged."""
    known = np.asarray([v for v in values if v is not None], dtype=np.float64)
    out: dict[str, Any] = {"per_split": list(values), "n": len(known)}
    if len(known) == 0:
        return {**out, "mean": None, "std": None, "min": None, "max": None}
    return {
        **out,
        "mean": round(float(known.mean()), digits),
        "std": round(float(known.std(ddof=1)), digits) if len(known) > 1 else 0.0,
        "min": round(float(known.min()), digits),
        "max": round(float(known.max()), digits),
    }


def over_splits(per_split: dict[str, Any], reference: str) -> dict[str, Any]:
    """Per strategy, each headline figure over split seeds (one figure per split: the mean over
    its seeds, or its mean curve's first reach), and whether each target holds on each split.

    Targets, on the test split of every split seed: AULC above the reference's (margin), the
    full-pool macro-F1 reached within 500 labels, at least twice the reference's positives per
    100 reviews.
    """
    splits = list(per_split)
    names = list(per_split[splits[0]]["strategies"])
    out: dict[str, Any] = {}
    for name in names:
        rows = [per_split[s]["strategies"][name] for s in splits]
        refs = [per_split[s]["strategies"].get(reference) for s in splits]
        reach = [r["labels_to_reach_full_pool"] for r in rows]
        entry: dict[str, Any] = {
            "split_seeds": [int(s) for s in splits],
            "aulc_macro_f1": _spread([r["aulc_macro_f1"]["mean"] for r in rows]),
            "final_macro_f1": _spread([r["final_macro_f1"]["mean"] for r in rows]),
            "labels_to_reach_full_pool": _spread(reach, digits=1),
            "positives_per_100_reviews": _spread(
                [r["positives_per_100_reviews"]["mean"] for r in rows], digits=3
            ),
        }
        if name != reference and all(refs):
            per = {
                "aulc_above_reference": [
                    r["aulc_macro_f1"]["mean"] > f["aulc_macro_f1"]["mean"]
                    for r, f in zip(rows, refs, strict=True)
                ],
                "reach_within_500": [
                    x is not None and x <= TARGET_LABELS_TO_FULL_POOL for x in reach
                ],
                "positives_twice_reference": [
                    r["positives_per_100_reviews"]["mean"]
                    >= TARGET_POSITIVES_FACTOR * f["positives_per_100_reviews"]["mean"]
                    for r, f in zip(rows, refs, strict=True)
                ],
            }
            entry["targets"] = {
                key: {"per_split": flags, "every_split": all(flags)} for key, flags in per.items()
            }
        out[name] = entry
    return out


def _curve_array(runs: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    xs = np.asarray([p["labels"] for p in runs[0]["curve"]], dtype=np.float64)
    ys = np.asarray([[p[key] for p in r["curve"]] for r in runs], dtype=np.float64)
    return xs, ys


def _summarise(
    runs: dict[str, list[dict[str, Any]]],
    config: ALConfig,
    full_test: float | np.ndarray,
    full_val: float | np.ndarray,
) -> dict[str, Any]:
    """Per strategy over its runs; `full_test` / `full_val` is the full-pool macro-F1 each run
    must reach (one figure, or one per run when the runs come from several splits)."""
    strategies: dict[str, Any] = {}
    per_seed_aulc: dict[str, np.ndarray] = {}
    per_seed_pos: dict[str, np.ndarray] = {}
    for name, rs in runs.items():
        xs, f1 = _curve_array(rs, "test_macro_f1")
        _, vf1 = _curve_array(rs, "validation_macro_f1")
        aulc = np.asarray([_aulc(xs, row) for row in f1])
        val_aulc = np.asarray([_aulc(xs, row) for row in vf1])
        pos = np.asarray([r["curve"][-1]["positives_per_100_reviews"] or 0.0 for r in rs])
        test_targets = np.broadcast_to(np.asarray(full_test, dtype=np.float64), (len(rs),))
        reach = [_first_reach(xs, row, t) for row, t in zip(f1, test_targets, strict=True)]
        reached = [r for r in reach if r is not None]
        mean_curve = f1.mean(axis=0)
        reach_mean = _first_reach(xs, mean_curve, float(test_targets.mean()))
        # Hate found by the time the full-pool macro-F1 is reached (on the mean curve).
        pos_at_reach = None
        if reach_mean is not None:
            at = int(np.flatnonzero(xs == reach_mean)[0])
            vals = [r["curve"][at]["positives_per_100_reviews"] for r in rs]
            pos_at_reach = _mean_std([v or 0.0 for v in vals]) if at > 0 else None
        per_seed_aulc[name], per_seed_pos[name] = aulc, pos
        curves = {
            key: {
                "mean": ys.mean(axis=0).round(4).tolist(),
                "std": ys.std(axis=0, ddof=1 if len(rs) > 1 else 0).round(4).tolist(),
            }
            for key in (
                "test_macro_f1",
                "test_recall_positive",
                "test_ap_positive",
                "validation_macro_f1",
            )
            for ys in [_curve_array(rs, key)[1]]
        }
        pos_curve = np.asarray(
            [[p["positives_per_100_reviews"] or 0.0 for p in r["curve"]] for r in rs]
        )
        curves["positives_per_100_reviews"] = {
            "mean": pos_curve.mean(axis=0).round(3).tolist(),
            "std": pos_curve.std(axis=0).round(3).tolist(),
        }
        strategies[name] = {
            "aulc_macro_f1": _mean_std(aulc),
            "final_macro_f1": _mean_std(f1[:, -1]),
            "final_recall_positive": _mean_std(_curve_array(rs, "test_recall_positive")[1][:, -1]),
            "final_ap_positive": _mean_std(_curve_array(rs, "test_ap_positive")[1][:, -1]),
            "labels_to_reach_full_pool": reach_mean,
            "labels_to_reach_full_pool_per_seed": reach,
            "labels_to_reach_full_pool_reached": _mean_std(reached) if reached else None,
            "seeds_reaching_full_pool": len(reached),
            "positives_per_100_reviews": _mean_std(pos),
            "positives_per_100_reviews_at_reach": pos_at_reach,
            "validation_aulc_macro_f1": _mean_std(val_aulc),
            "validation_labels_to_reach_full_pool": _first_reach(
                xs, vf1.mean(axis=0), float(np.mean(full_val))
            ),
            "chosen_by": rs[0]["chosen_by"],
            "aulc_per_seed": aulc.round(5).tolist(),
            "curve_labels": xs.astype(int).tolist(),
            "curves": curves,
        }
    ref = config.reference
    for name in strategies:
        if name == ref:
            continue
        strategies[name]["vs_" + ref] = {
            "aulc_macro_f1": _paired_tests(per_seed_aulc[name], per_seed_aulc[ref]),
            "positives_per_100_reviews": _paired_tests(per_seed_pos[name], per_seed_pos[ref]),
        }
    # Any choice of a "best" configuration is made on the validation split, never on test.
    best = max(strategies, key=lambda s: strategies[s]["validation_aulc_macro_f1"]["mean"])
    return {
        "full_pool_validation_macro_f1": float(np.mean(full_val)),
        "best_by_validation_aulc": best,
        "best_by_validation_targets": choose_by_targets(strategies, ref),
        "strategies": strategies,
    }


TARGET_LABELS_TO_FULL_POOL = 500
TARGET_POSITIVES_FACTOR = 2.0


def choose_by_targets(strategies: dict[str, Any], ref: str) -> dict[str, Any]:
    """The configuration that meets the three targets on the validation split, if any.

    Targets: validation AULC above the reference's (margin), the validation full-pool macro-F1
    reached within 500 labels, and at least twice the reference's positives per 100 reviews
    (counted in the pool the reviews come from, not on a held-out split). Among those that meet
    all three, the highest validation AULC; otherwise the one closest to meeting them, named as
    such. The test split only reports how the choice fares.
    """
    if ref not in strategies:
        return {"strategy": None, "meets_all": False, "why": f"reference {ref} not run"}
    r = strategies[ref]
    r_aulc = r["validation_aulc_macro_f1"]["mean"]
    r_pos = r["positives_per_100_reviews"]["mean"]

    def checks(name: str) -> dict[str, bool]:
        v = strategies[name]
        reach = v["validation_labels_to_reach_full_pool"]
        return {
            "validation_aulc_above_reference": v["validation_aulc_macro_f1"]["mean"] > r_aulc,
            "validation_reach_within_500": reach is not None
            and reach <= TARGET_LABELS_TO_FULL_POOL,
            "positives_twice_reference": v["positives_per_100_reviews"]["mean"]
            >= TARGET_POSITIVES_FACTOR * r_pos,
        }

    table = {n: checks(n) for n in strategies if n != ref}
    if not table:
        return {"strategy": None, "meets_all": False, "why": "only the reference was run"}
    score = {
        n: (sum(c.values()), strategies[n]["validation_aulc_macro_f1"]["mean"])
        for n, c in table.items()
    }
    best = max(score, key=lambda n: score[n])
    return {"strategy": best, "meets_all": all(table[best].values()), "checks": table[best]}


def configuration_slug(name: str) -> str:
    """A file name for a strategy or mix: `mix:entropy=0.6,seals/top_positive=0.4` becomes
    `mix-entropy-0.6-seals-top_positive-0.4`."""
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", name).strip("-.")
    if not slug:
        raise WorkbenchError(f"strategy name {name!r} gives no file name")
    return slug


def configuration_piece(
    result: dict[str, Any], name: str, combined: str | None = None
) -> dict[str, Any]:
    """The part of a combined `bench al` result about one configuration: its summary, its
    figures over split seeds and per split, and what it was run beside (the paired tests
    compare it with the reference run in the same run)."""
    if name not in result["strategies"]:
        raise WorkbenchError(f"{name!r} is not among the strategies {list(result['strategies'])}")
    config = dict(result["config"])
    piece: dict[str, Any] = {
        "strategy": name,
        "data": result["data"],
        "config": {**config, "strategies": [name], "run_beside": config["strategies"]},
        "full_pool_macro_f1": result["full_pool_macro_f1"],
        "full_pool": result.get("full_pool"),
        "full_pool_validation_macro_f1": result.get("full_pool_validation_macro_f1"),
        "strategies": {name: result["strategies"][name]},
    }
    if "split_seeds" in result:
        piece["split_seeds"] = result["split_seeds"]
        piece["over_splits"] = {name: result["over_splits"][name]}
        piece["per_split"] = {
            split: {
                "full_pool_macro_f1": r["full_pool_macro_f1"],
                "full_pool": r["full_pool"],
                "strategies": {name: r["strategies"][name]},
            }
            for split, r in result["per_split"].items()
        }
    if result.get("plot"):
        piece["plot"] = result["plot"]
    if combined:
        piece["combined"] = combined
    return piece


def write_al_results(result: dict[str, Any]) -> tuple[Path, list[Path]]:
    """The combined result as `al-<stamp>.json` (and `al-latest.json`), and one file per
    configuration as `al/<slug>-<stamp>.json`, so each configuration tried keeps its own file."""
    now = datetime.now(UTC)
    combined = write_result("al", result, now=now)
    pieces = [
        write_result(
            f"al/{configuration_slug(name)}",
            configuration_piece(result, name, combined.name),
            latest=False,
            now=now,
        )
        for name in result["strategies"]
    ]
    return combined, pieces


def plot_learning_curves(
    runs: dict[str, list[dict[str, Any]]], full_pool: float, path: Path
) -> Path:
    """Macro-F1 and positives found, mean ± std over seeds, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for name, rs in runs.items():
        xs, f1 = _curve_array(rs, "test_macro_f1")
        m, s = f1.mean(axis=0), f1.std(axis=0)
        ax1.plot(xs, m, label=name)
        ax1.fill_between(xs, m - s, m + s, alpha=0.15)
        pos = np.asarray([[p["positives_found"] for p in r["curve"]] for r in rs], dtype=float)
        ax2.plot(xs, pos.mean(axis=0), label=name)
    ax1.axhline(full_pool, color="black", linestyle="--", label="full pool (majority labels)")
    ax1.set_xlabel("labels (seed set included)")
    ax1.set_ylabel("test macro-F1")
    ax1.legend(fontsize=7)
    ax2.set_xlabel("labels (seed set included)")
    ax2.set_ylabel("positive-class items found (majority label)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- selection speed: `workbench bench select` ---------------------------------------------

SMALL_TEXT_PEERS = (
    "st_breaking_ties",
    "st_lightweight_coreset",
    "st_embedding_kmeans",
    "st_greedy_coreset",
)


def synthetic_pool(path: Path, pool_size: int, dim: int, seed: int = 0) -> Path:
    """Unit vectors from a 50-component Gaussian mixture, written as .npy for memory mapping."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim)).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(pool_size, dim))
    step = 100_000
    for s in range(0, pool_size, step):
        m = min(step, pool_size - s)
        x = centres[rng.integers(0, 50, m)] + 0.8 * rng.normal(size=(m, dim)).astype(np.float32)
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out.flush()
    del out
    return path


def _small_text_query(
    name: str, head: Any, x: np.ndarray, labelled: np.ndarray, y: np.ndarray, n: int, rng_seed: int
) -> np.ndarray:
    """One small-text query with our head behind small-text's classifier calls."""
    from small_text import (
        BreakingTies,
        EmbeddingKMeans,
        GreedyCoreset,
        LightweightCoreset,
        SklearnDataset,
    )

    class _Adapter:
        # small-text asks the classifier for probabilities and embeddings of a dataset.
        def predict_proba(self, dataset: Any) -> np.ndarray:
            return np.asarray(head.predict_proba(dataset.x))

        def embed(self, dataset: Any, return_proba: bool = False, **_: Any) -> Any:
            x = np.asarray(dataset.x)
            return (x, np.asarray(head.predict_proba(x))) if return_proba else x

    dataset = SklearnDataset(x, np.zeros(len(x), dtype=np.int64))
    unlabelled = np.setdiff1d(np.arange(len(x)), labelled)
    strategy = {
        "st_breaking_ties": BreakingTies,
        "st_lightweight_coreset": LightweightCoreset,
        "st_embedding_kmeans": EmbeddingKMeans,
        "st_greedy_coreset": GreedyCoreset,
    }[name]()
    np.random.seed(rng_seed)
    return np.asarray(strategy.query(_Adapter(), dataset, unlabelled, labelled, y, n=n))


def _own_peak_rss_kb(fallback: int) -> int:
    """This process's own peak resident memory.

    Linux keeps ru_maxrss across fork + exec, so a spawned child reports at least the RSS its
    parent had when it forked (measured: 2.3 GB for `random` after the parent wrote a 1.5 GB
    pool). VmHWM in /proc/self/status belongs to the new process image alone.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return fallback


def select_child(
    strategy_name: str, pool_path: str, batch: int, n_labelled: int, seed: int, threads: int
) -> dict[str, Any]:
    """Run in a fresh process: one setup and one timed selection round; peak RSS at the end."""
    import resource
    import time

    limit_threads(threads)

    from workbench.services.train.heads import LogisticHead

    x = np.load(pool_path, mmap_mode="r")
    rng = np.random.default_rng(seed)
    labelled = np.sort(rng.choice(x.shape[0], n_labelled, replace=False))
    xl = np.asarray(x[labelled])
    # Three classes from a fixed linear rule: a head with real boundaries to be uncertain about.
    w = np.random.default_rng(seed + 1).normal(size=(x.shape[1], 3)).astype(np.float32)
    y = np.argmax(xl @ w, axis=1)
    head = LogisticHead(random_state=seed).fit(xl, y)
    setup = 0.0
    if strategy_name.startswith("st_"):
        t = time.perf_counter()
        picked = _small_text_query(strategy_name, head, np.asarray(x), labelled, y, batch, seed)
        seconds = time.perf_counter() - t
        n_picked = len(picked)
    else:
        params: dict[str, Any] = {}
        if strategy_name == "ranked_batch":
            # modAL's distance matrix is candidates x labelled; it sees a 100k subsample.
            params["max_candidates"] = 100_000
        strategy = make_strategy(strategy_name, **params)
        ctx = SelectionContext(
            vectors=x,
            labelled=labelled,
            labels=np.asarray(y),
            head=head,
            positive=0,
            rng=rng,
        )
        t = time.perf_counter()
        strategy.prepare(ctx)
        setup = time.perf_counter() - t
        ctx.probabilities = None  # scoring the pool with the head is part of every round
        t = time.perf_counter()
        picked_sel = strategy.select(ctx, batch)
        seconds = time.perf_counter() - t
        n_picked = len(picked_sel)
    peak_kb = _own_peak_rss_kb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return {
        "strategy": strategy_name,
        "pool_size": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "batch": batch,
        "picked": n_picked,
        "seconds": round(seconds, 4),
        "setup_seconds": round(setup, 4),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


def run_select_benchmark(
    strategies: Sequence[str],
    pool_size: int,
    dim: int,
    batch: int,
    *,
    n_labelled: int = 1000,
    seed: int = 0,
    threads: int = 1,
    timeout_s: float = 600.0,
    workdir: Path | None = None,
    progress: ProgressFactory = no_progress,
) -> dict[str, Any]:
    """Time each strategy in its own spawned process (peak memory only grows in a process)."""
    import multiprocessing as mp
    import tempfile

    for name in strategies:
        if name not in SMALL_TEXT_PEERS:
            make_strategy(name)
    if n_labelled >= pool_size:
        raise WorkbenchError(f"--pool-size {pool_size} must exceed the {n_labelled} labelled")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = synthetic_pool(Path(tmp) / "pool.npy", pool_size, dim, seed)
        ctx = mp.get_context("spawn")
        bar = progress(total=len(strategies), desc="strategies")
        for name in strategies:
            with ctx.Pool(1) as workers:
                job = workers.apply_async(
                    select_child, (name, str(path), batch, n_labelled, seed, threads)
                )
                try:
                    results.append(job.get(timeout=timeout_s))
                except mp.TimeoutError:
                    results.append(
                        {
                            "strategy": name,
                            "pool_size": pool_size,
                            "batch": batch,
                            "seconds": None,
                            "setup_seconds": None,
                            "peak_rss_mb": None,
                            "error": f"did not finish within {timeout_s:.0f} s",
                        }
                    )
                except Exception as exc:  # a peer library failing is a result, not a crash
                    results.append(
                        {
                            "strategy": name,
                            "pool_size": pool_size,
                            "batch": batch,
                            "seconds": None,
                            "setup_seconds": None,
                            "peak_rss_mb": None,
                            "error": f"{type(exc).__name__}: {exc}",
                        }
                    )
                workers.terminate()
            bar.update(1)
        bar.close()
    return {
        "pool_size": pool_size,
        "dim": dim,
        "batch": batch,
        "labelled": n_labelled,
        "threads": threads,
        "results": results,
    }
