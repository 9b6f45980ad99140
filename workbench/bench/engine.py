"""Local against Ray engine: `workbench embed` on the same texts with each, throughput and the
vectors compared (cosine per item, the same top-10 neighbours).

Both runs load the default text encoder from the same model cache, ingest is not timed, and
Ray's start-up is timed apart from the embedding, since a cluster user pays it once.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.embed import read_texts

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


def _text_vectors(db: Any, project: str) -> dict[str, np.ndarray]:
    from sqlalchemy import select

    from workbench.db.models import Item
    from workbench.services.projects import get_project
    from workbench.services.vectors.spaces import get_space, load_space_vectors

    with db.sessions() as s:
        p = get_project(s, project)
        ids, vecs = load_space_vectors(s, db.settings, get_space(s, p, "text"))
        ext = {
            r.id: r.external_id
            for r in s.execute(select(Item.id, Item.external_id).where(Item.project_id == p.id))
        }
    return {ext[int(i)]: v for i, v in zip(ids, vecs, strict=True)}


def compare_vectors(a: dict[str, np.ndarray], b: dict[str, np.ndarray], k: int = 10) -> dict:  # type: ignore[type-arg]
    """Cosine of each item's two vectors, and how many of its top-k neighbours agree."""
    keys = sorted(set(a) & set(b))
    va = np.stack([a[x] for x in keys])
    vb = np.stack([b[x] for x in keys])
    cos = (va * vb).sum(1)
    k = min(k, len(keys) - 1)
    queries = range(min(200, len(keys)))
    agree = []
    for q in queries:
        top_a = set(np.argsort(-(va @ va[q]))[1 : k + 1].tolist())
        top_b = set(np.argsort(-(vb @ vb[q]))[1 : k + 1].tolist())
        agree.append(len(top_a & top_b) / max(k, 1))
    return {
        "items": len(keys),
        "missing": len(set(a) ^ set(b)),
        "min_cosine": round(float(cos.min()), 6),
        "mean_cosine": round(float(cos.mean()), 6),
        f"top{k}_neighbour_agreement": round(float(np.mean(agree)), 4),
    }


def engine_benchmark(
    data: Path,
    text_column: str,
    *,
    texts: int,
    batch_size: int = 128,
    actors: int | None = None,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """`bench engine`: the first `texts` texts embedded by the local engine, then by Ray."""
    from workbench.config import Settings
    from workbench.db.database import open_database
    from workbench.encoders.text import build_onnx, model_cache_root
    from workbench.engines.ray_engine import RayEngine
    from workbench.services.audit import Actor
    from workbench.services.ingest.write import ingest_path
    from workbench.services.vectors.embed import embed_project

    rows = read_texts(data, text_column, texts)
    build_onnx()  # the one-off export stays out of the timing
    # Ray's workers find the same export (they inherit the environment of the Ray started here).
    os.environ.setdefault("WORKBENCH_MODEL_CACHE", str(model_cache_root()))
    result: dict[str, Any] = {
        "data": str(data),
        "column": text_column,
        "texts": len(rows),
        "batch_size": batch_size,
        "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        manifest = home / "texts.jsonl"
        with manifest.open("w") as fh:
            for i, text in enumerate(rows):
                fh.write(json.dumps({"external_id": f"t{i}", "text": text or "."}) + "\n")
        db = open_database(Settings(home=home / "home"))
        engine = RayEngine(actors=actors)
        try:
            actor = Actor.system()
            for name in ("local", "ray"):
                ingest_path(db.sessions, db.settings, manifest, name, actor)
            started = time.perf_counter()
            embed_project(db, "local", actor, batch_size=batch_size, engine="local")
            local_s = time.perf_counter() - started
            progress(f"local: {len(rows) / local_s:.1f} texts/s ({local_s:.1f} s)")
            started = time.perf_counter()
            engine.start()
            start_s = time.perf_counter() - started
            started = time.perf_counter()
            embed_project(db, "ray", actor, batch_size=batch_size, engine=engine)
            ray_s = time.perf_counter() - started
            progress(f"ray: {len(rows) / ray_s:.1f} texts/s ({ray_s:.1f} s, start {start_s:.1f} s)")
            result["ray_actors"] = engine.pool_size()
            result["ray_cpus_per_actor"] = engine.cpus_per_actor
            result["vectors"] = compare_vectors(
                _text_vectors(db, "local"), _text_vectors(db, "ray")
            )
        finally:
            engine.close()
            db.engine.dispose()
    result["local"] = {"seconds": round(local_s, 2), "texts_per_s": round(len(rows) / local_s, 1)}
    result["ray"] = {
        "seconds": round(ray_s, 2),
        "texts_per_s": round(len(rows) / ray_s, 1),
        "start_seconds": round(start_s, 2),
        "texts_per_s_with_start": round(len(rows) / (ray_s + start_s), 1),
    }
    result["ray_over_local"] = round(local_s / ray_s, 3)
    return result
