"""Builders for the scan tests: a fake text encoder, a champion trained on it, an API key, and
the API server on a free port."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

from workbench.api.app import ServerThread, create_app
from workbench.api.limits import ApiLimits
from workbench.db.database import Database
from workbench.db.models import ModelStatus, ModelVersion
from workbench.encoders.base import Encoder, l2_normalise
from workbench.services.apikeys import create_api_key
from workbench.services.audit import Actor
from workbench.services.projects import get_project
from workbench.services.vectors.embed import fused_version
from workbench.services.vectors.spaces import FUSED, get_or_create_space


class WordEncoder(Encoder):
    """Text containing "hateful" points one way, other text the other; "slow" sleeps first."""

    id = "word-test"
    modality = "text"

    def __init__(self, version: str = "1", delay_s: float = 0.5) -> None:
        self.version, self.dim, self.delay_s = version, 8, delay_s

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        rows = []
        for text in batch:
            if "slow" in text:
                time.sleep(self.delay_s)
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).normal(scale=0.1, size=self.dim)
            v[0] = 1.0 if "hateful" in text else -1.0
            rows.append(v)
        return l2_normalise(np.array(rows))


def lookup(encoder: Encoder):  # type: ignore[no-untyped-def]
    return lambda modality, project: encoder


def make_champion(db: Database, project_name: str, encoder: Encoder, version: int = 1) -> int:
    """A champion head over the fused space of `encoder`'s text vectors; returns its id."""
    texts = [f"hateful post {i}" for i in range(20)] + [f"kind post {i}" for i in range(20)]
    x = encoder.encode(texts)
    y = ["hate"] * 20 + ["none"] * 20
    head = LogisticRegression(C=10.0).fit(x, y)
    with db.sessions.begin() as s:
        project = get_project(s, project_name)
        get_or_create_space(s, project, "text", encoder.id, encoder.version, encoder.dim)
        # The project's settings must name this encoder for its space to count as configured.
        settings = dict(project.settings)
        settings["encoders"] = {**settings.get("encoders", {}), "text": encoder.id}
        project.settings = settings
        fv = fused_version({"text": (encoder.id, encoder.version, encoder.dim)})
        fused = get_or_create_space(s, project, FUSED, "fusion", fv, encoder.dim)
        out = db.settings.resolved_home / "models" / str(project.id) / f"v{version:04d}"
        out.mkdir(parents=True, exist_ok=True)
        joblib.dump(head, out / "head.joblib")
        for old in s.query(ModelVersion).filter_by(project_id=project.id, status="champion"):
            old.status = ModelStatus.retired
        s.flush()
        mv = ModelVersion(
            project_id=project.id,
            version=version,
            head="logistic",
            params={},
            classes=["hate", "none"],
            metrics={},
            calibrated=False,
            space_id=fused.id,
            trained_on=40,
            artifact_path=str(out / "head.joblib"),
            status=ModelStatus.champion,
        )
        s.add(mv)
        s.flush()
        return mv.id


def make_key(db: Database, name: str = "uploader", scopes: tuple[str, ...] = ("scan",)) -> str:
    with db.sessions.begin() as s:
        _, token = create_api_key(s, name, list(scopes), Actor.system())
    return token


@dataclass
class RunningApi:
    url: str
    server: ServerThread


@contextmanager
def running_api(
    db: Database, encoder: Encoder | None = None, limits: ApiLimits | None = None
) -> Iterator[RunningApi]:
    kwargs = {"encoder_lookup": lookup(encoder)} if encoder is not None else {}
    app = create_app(db, limits=limits, **kwargs)
    server = ServerThread(app).start()
    try:
        yield RunningApi(server.url, server)
    finally:
        server.stop()
