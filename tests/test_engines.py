"""Batch engines: the local engine keeps today's results; the Ray engine gives the same vectors,
neighbours and pool scores, retries a batch whose actor died, and a run resumes.

Ray is imported at the top on purpose: `make test` installs it (the `dev` extra), so a missing
Ray fails these tests in CI instead of skipping them. One local Ray with 2 CPUs serves the module.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import ray
from builders import make_items, make_project
from quality_builders import Labels, add_fused_vectors, separable_vectors
from sqlalchemy import func, select

from workbench.bench.engine import compare_vectors
from workbench.db.database import Database
from workbench.db.models import Embedding, EmbeddingStatus, Item, ModelVersion, Project, RoundStatus
from workbench.encoders.base import Encoder, l2_normalise
from workbench.engines import engine_scope, make_engine
from workbench.engines.local import LocalEngine
from workbench.engines.ray_engine import RayEngine
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor
from workbench.services.projects import get_project, set_project_setting
from workbench.services.train import scoring
from workbench.services.train.rounds import run_round_now
from workbench.services.train.train import score_vectors
from workbench.services.vectors.embed import embed_project
from workbench.services.vectors.similar import similar_items
from workbench.services.vectors.spaces import FUSED, get_space, load_space_vectors

SYSTEM = Actor.system()
TESTS = Path(__file__).parent

# Short, varied texts in the style of the Davidson tweets (not copied from them).
TEXTS = [
    f"{opener} {topic} {closer}"
    for opener, topic, closer in zip(
        ["honestly", "lol", "can't believe", "so tired of", "love how", "why is"] * 6,
        ["the refs tonight", "my landlord", "this new album", "traffic on 95", "the group chat",
         "monday mornings", "that trailer", "crypto bros", "the weather", "my cat"] * 4,
        ["!!", "smh", "again", "ok", "for real", "at all"] * 6,
        strict=False,
    )
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    # Workers import the test module (its fake encoders) and the package from these paths.
    path = os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
        logging_level="WARNING",
    )
    yield
    ray.shutdown()


class HashEncoder(Encoder):
    """Deterministic fake text encoder; `stop_on` raises for a text containing it."""

    id = "hash-text"
    modality = "text"

    def __init__(self, stop_on: str | None = None) -> None:
        self.version, self.dim, self.stop_on = "1", 16, stop_on

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        if self.stop_on is not None and any(self.stop_on in t for t in batch):
            raise KeyboardInterrupt("simulated crash")  # not a per-item failure: the run stops
        rows = []
        for text in batch:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            rows.append(np.random.default_rng(seed).normal(size=self.dim))
        return l2_normalise(np.array(rows))


def hash_lookup(modality: str, project: Project) -> Encoder:
    return HashEncoder()


def stopping_lookup(modality: str, project: Project) -> Encoder:
    return HashEncoder(stop_on="comment 13")


class Doubler:
    def __call__(self) -> Any:
        return lambda unit: (os.getpid(), unit * 2)


class DiesOnce:
    """A worker whose process exits on unit 3 the first time (as an OOM kill would)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __call__(self) -> Any:
        def work(unit: int) -> int:
            if unit == 3 and not self.marker.exists():
                self.marker.write_text("died")
                os._exit(1)
            return unit * 2

        return work


# ---- the engines themselves ------------------------------------------------------------------


def test_an_unknown_engine_is_refused_with_the_known_names() -> None:
    with pytest.raises(WorkbenchError, match="local, ray"):
        make_engine("spark")


def test_the_local_engine_runs_every_unit_in_order_in_this_process() -> None:
    got = list(LocalEngine().map([1, 2, 3], Doubler()))
    assert got == [(0, (os.getpid(), 2)), (1, (os.getpid(), 4)), (2, (os.getpid(), 6))]


def test_the_ray_engine_runs_every_unit_in_actors() -> None:
    got = dict(RayEngine().map(list(range(12)), Doubler()))
    assert sorted(got) == list(range(12))
    assert [r for _, (_, r) in sorted(got.items())] == [u * 2 for u in range(12)]
    assert os.getpid() not in {pid for pid, _ in got.values()}


def test_a_batch_whose_actor_died_is_retried(tmp_path: Path) -> None:
    marker = tmp_path / "died"
    got = dict(RayEngine().map(list(range(6)), DiesOnce(marker)))
    assert marker.exists()  # the actor did die on unit 3 ...
    assert got == {i: i * 2 for i in range(6)}  # ... and its batch was done again


def test_an_engine_passed_in_is_left_open_and_one_made_here_is_closed() -> None:
    mine = RayEngine()
    with engine_scope(mine, "local") as engine:
        assert engine is mine
    with engine_scope(None, "local") as engine:
        assert isinstance(engine, LocalEngine)
    assert ray.is_initialized()  # the module's Ray was not started by the engine: left alone


# ---- embedding -------------------------------------------------------------------------------


def _vectors_by_external_id(db: Database, project: str, space: str) -> dict[str, np.ndarray]:
    with db.sessions() as s:
        p = get_project(s, project)
        ids, vecs = load_space_vectors(s, db.settings, get_space(s, p, space))
        ext = {
            r.id: r.external_id
            for r in s.execute(select(Item.id, Item.external_id).where(Item.project_id == p.id))
        }
    return {ext[int(i)]: v for i, v in zip(ids, vecs, strict=True)}


def test_ray_and_local_embed_the_same_vectors_and_neighbours(db: Database) -> None:
    with db.sessions.begin() as s:
        for name in ("loc", "ray"):
            make_items(s, make_project(s, name), TEXTS)
    # The registered MiniLM encoder, loaded once in each of two actors; small batches so
    # both actors get work.
    local = embed_project(db, "loc", SYSTEM, batch_size=8, engine="local")
    remote = embed_project(db, "ray", SYSTEM, batch_size=8, engine="ray")
    assert local.as_dict()["embedded"] == remote.as_dict()["embedded"] > 0
    for space in ("text", FUSED):
        a = _vectors_by_external_id(db, "loc", space)
        b = _vectors_by_external_id(db, "ray", space)
        assert set(a) == set(b) and len(a) == len(TEXTS)
        cosine = [float(a[k] @ b[k]) for k in a]  # unit vectors
        assert min(cosine) >= 0.9999
    with db.sessions() as s:
        for ext in ("i0", "i7", "i21"):
            hits = [
                similar_items(s, db.settings, get_project(s, name), external_id=ext, k=5)
                for name in ("loc", "ray")
            ]
            assert [n["external_id"] for n in hits[0]["neighbours"]] == [
                n["external_id"] for n in hits[1]["neighbours"]
            ]


def test_the_project_setting_chooses_the_engine_and_a_ray_run_resumes(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        make_items(s, p, [f"comment {n}" for n in range(20)], prefix="item-")
        set_project_setting(s, p, "engine", "ray", SYSTEM)
    # A run that stops part way (an interrupt inside an actor) keeps the batches it wrote.
    with pytest.raises(Exception, match="simulated crash"):
        embed_project(db, "p", SYSTEM, batch_size=2, encoder_lookup=stopping_lookup)
    with db.sessions() as s:
        written = s.scalar(
            select(func.count()).select_from(Embedding).where(
                Embedding.status == EmbeddingStatus.ok)
        ) or 0  # fmt: skip
    assert written < 20
    # The next run does only what is missing, on Ray (the project's setting).
    report = embed_project(db, "p", SYSTEM, batch_size=2, encoder_lookup=hash_lookup)
    assert report.spaces["text"].embedded == 20 - written
    assert report.spaces["text"].up_to_date == written
    with db.sessions.begin() as s:
        make_items(s, get_project(s, "p"), ["one more", "and another"], prefix="new-")
    again = embed_project(db, "p", SYSTEM, batch_size=2, encoder_lookup=hash_lookup)
    assert again.spaces["text"].embedded == 2 and again.spaces["text"].up_to_date == 20


# ---- pool scoring ----------------------------------------------------------------------------

CLASSES = ["hate", "spam", "none"]


def _labelled_project(db: Database, name: str) -> None:
    vectors, truth = separable_vectors(CLASSES, 20)
    with db.sessions.begin() as s:
        p = make_project(s, name)
        lab = Labels(s, p)
        items = [lab.item(f"x{n}") for n in range(len(truth))]
        add_fused_vectors(s, db.settings, p, items, vectors)
        seen: dict[str, int] = {}
        for n, cls in enumerate(truth):
            if seen.get(cls, 0) < 6:
                seen[cls] = seen.get(cls, 0) + 1
                lab.label(f"x{n}", f"alice-{name}", cls)


def _scores(db: Database, name: str) -> tuple[dict[str, np.ndarray], Any]:
    with db.sessions() as s:
        p = get_project(s, name)
        mv = s.scalars(select(ModelVersion).where(ModelVersion.project_id == p.id)).one()
        ids = np.load(Path(mv.scores_path).with_name("item_ids.npy"))
        scores = np.load(mv.scores_path)
        ext = {
            r.id: r.external_id
            for r in s.execute(select(Item.id, Item.external_id).where(Item.project_id == p.id))
        }
        return {ext[int(i)]: sc for i, sc in zip(ids, scores, strict=True)}, mv.artifact_path


def test_a_round_scores_the_pool_the_same_on_ray(db: Database, monkeypatch: Any) -> None:
    monkeypatch.setattr(scoring, "SCORE_CHUNK", 16)  # 60 items: four ranges over two actors
    for name in ("loc", "ray"):
        _labelled_project(db, name)
        run = run_round_now(
            db, name, SYSTEM, refill_queue=False, worker="test", engine=name.replace("loc", "local")
        )
        assert run.status == RoundStatus.succeeded
    local, _ = _scores(db, "loc")
    remote, artifact = _scores(db, "ray")
    assert set(local) == set(remote) and len(remote) == 60
    for ext in local:
        np.testing.assert_allclose(remote[ext], local[ext], atol=1e-6)
    # And the Ray scores are the saved head's scores of every vector (x0.. made in id order).
    with db.sessions() as s:
        _, vecs = load_space_vectors(s, db.settings, get_space(s, get_project(s, "ray"), FUSED))
    expected = score_vectors(joblib.load(artifact), vecs)
    got = np.stack([remote[f"x{n}"] for n in range(60)])
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_embed_command_takes_the_engine(sqlite_db: Database, cli: Any) -> None:
    with sqlite_db.sessions.begin() as s:
        make_items(s, make_project(s), TEXTS[:12])
    out = cli.json("embed", "--project", "p", "--engine", "ray", "--batch-size", "4")
    assert out["embedded"] == 24  # 12 text vectors and 12 fused ones
    result = cli("embed", "--project", "p", "--engine", "spark")
    assert result.exit_code == 2 and "spark" in result.stderr


def test_the_benchmark_comparison_sees_a_changed_vector() -> None:
    rng = np.random.default_rng(0)
    a = {f"t{i}": v / np.linalg.norm(v) for i, v in enumerate(rng.normal(size=(30, 8)))}
    same = compare_vectors(a, dict(a))
    assert same["min_cosine"] == 1.0 and same["top10_neighbour_agreement"] == 1.0
    b = dict(a) | {"t3": -a["t3"]}
    changed = compare_vectors(a, b)
    assert changed["min_cosine"] == -1.0 and changed["top10_neighbour_agreement"] < 1.0


def test_bench_engine_compares_local_and_ray_on_the_same_texts(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_BENCHMARKS_DIR", str(tmp_path))
    data = tmp_path / "texts.csv"
    data.write_text("tweet\n" + "\n".join(f"short text number {i}" for i in range(12)) + "\n")
    out = cli.json("bench", "engine", "--texts", "12", "--data", data, "--batch-size", "4",
                   "--actors", "1")  # fmt: skip
    assert out["texts"] == 12 and out["ray_actors"] == 1
    assert out["vectors"]["items"] == 12 and out["vectors"]["missing"] == 0
    assert out["vectors"]["min_cosine"] >= 0.9999
    assert out["local"]["texts_per_s"] > 0 and out["ray"]["texts_per_s"] > 0
    written = json.loads((tmp_path / "engine-latest.json").read_text())
    assert written["results"] == out
