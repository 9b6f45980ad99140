"""Champion scoring of new content: the project's encoders and champion head kept loaded in the
process, reloaded when the champion changes.

New content gets the vector a round would give it: each modality through the encoder the
project's settings name (the same registry `workbench embed` uses), then the fused vector with
the layout the champion's fused space was built with. The layout is recovered by matching
`fused_version` over the project's configured spaces, so a champion whose vectors can no longer
be reproduced (encoders changed since, not re-embedded) is reported as not scorable rather than
fed vectors it never saw.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.config import Settings
from workbench.db.models import EmbeddingSpace, ModelStatus, ModelVersion, Project
from workbench.encoders.base import Encoder
from workbench.encoders.fusion import fuse_one
from workbench.services.projects import project_settings
from workbench.services.scan.batching import EncodeBatcher
from workbench.services.scan.decide import ModelScores
from workbench.services.train.train import champion, load_head
from workbench.services.vectors.embed import fused_version
from workbench.services.vectors.spaces import FUSED, MODALITIES, default_encoder_lookup

EncoderLookup = Callable[[str, Project], Encoder]
RETRY_UNUSABLE_S = 60.0


@dataclass(frozen=True)
class LoadedChampion:
    """Everything needed to score content without touching the database."""

    model_version_id: int
    version: int
    head: Any
    classes: list[str]
    layout: dict[str, int]  # modality -> width of its slot in the fused vector
    encoders: dict[str, Encoder]
    # Texts of concurrent scans share encoder calls (media go one by one: they are rarer and
    # each is large).
    text_batcher: EncodeBatcher | None = None


@dataclass(frozen=True)
class ScanMedia:
    """One checked media file of a scan: its modality and where its bytes are."""

    modality: str
    path: Path


class NotScorable(Exception):
    """The champion cannot score this content (why is the message)."""


def champion_layout(
    session: Session, project: Project, mv: ModelVersion
) -> tuple[dict[str, int], dict[str, EmbeddingSpace]] | None:
    """The modality layout of the champion's fused space, or None when it cannot be rebuilt."""
    fused = session.get(EmbeddingSpace, mv.space_id) if mv.space_id is not None else None
    if fused is None or fused.name != FUSED:
        return None
    configured = project_settings(project).encoders
    spaces: dict[str, EmbeddingSpace] = {}
    for m in MODALITIES:
        sp = session.scalar(
            select(EmbeddingSpace).where(
                EmbeddingSpace.project_id == project.id,
                EmbeddingSpace.name == m,
                EmbeddingSpace.encoder_id == getattr(configured, m),
            )
        )
        if sp is not None:
            spaces[m] = sp
    # A fused space is built from the spaces of one embed run: some subset of these.
    present = [m for m in MODALITIES if m in spaces]
    for size in range(len(present), 0, -1):
        for combo in combinations(present, size):
            parts = {
                m: (spaces[m].encoder_id, spaces[m].encoder_version, spaces[m].dim) for m in combo
            }
            if (
                fused_version(parts) == fused.encoder_version
                and sum(spaces[m].dim for m in combo) == fused.dim
            ):
                return {m: spaces[m].dim for m in combo}, {m: spaces[m] for m in combo}
    return None


class ChampionScorer:
    """Per-project champion heads and encoders, loaded once and swapped when the champion
    changes. Thread-safe: the API scores from many request threads at once."""

    def __init__(self, settings: Settings, encoder_lookup: EncoderLookup = default_encoder_lookup):
        self.settings = settings
        self.encoder_lookup = encoder_lookup
        self._loaded: dict[int, LoadedChampion | str] = {}
        self._champion_of: dict[int, int | None] = {}
        self._loaded_at: dict[int, float] = {}
        self._batchers: dict[int, EncodeBatcher] = {}  # by encoder: projects may share one
        self._lock = threading.Lock()

    def current(self, session: Session, project: Project) -> LoadedChampion | str:
        """The loaded champion, or why there is none ("no_champion", "not_scorable: ...").

        One indexed SELECT per call tells whether the champion changed since it was loaded.
        """
        mv_id = session.scalar(
            select(ModelVersion.id).where(
                ModelVersion.project_id == project.id, ModelVersion.status == ModelStatus.champion
            )
        )
        if mv_id is None:
            return "no_champion"
        with self._lock:
            cached = self._loaded.get(project.id)
            fresh = time.monotonic() - self._loaded_at.get(project.id, 0.0) < RETRY_UNUSABLE_S
            # A champion that could not be loaded is tried again now and then: re-embedding
            # can make it usable without a new champion.
            if self._champion_of.get(project.id) == mv_id and (
                isinstance(cached, LoadedChampion) or fresh
            ):
                return cached  # type: ignore[return-value]
            loaded = self._load(session, project)
            self._loaded[project.id] = loaded
            self._champion_of[project.id] = mv_id
            self._loaded_at[project.id] = time.monotonic()
            return loaded

    def _load(self, session: Session, project: Project) -> LoadedChampion | str:
        mv = champion(session, project)
        if mv is None:
            return "no_champion"
        found = champion_layout(session, project, mv)
        if found is None:
            return (
                f"not_scorable: the vectors of champion v{mv.version} cannot be rebuilt with "
                "the encoders configured now (run `workbench embed`, then retrain)"
            )
        layout, spaces = found
        encoders = {}
        for m in layout:
            enc = self.encoder_lookup(m, project)
            if enc.version != spaces[m].encoder_version:
                return (
                    f"not_scorable: the {m} encoder is now version {enc.version}, the champion "
                    f"v{mv.version} was trained on {spaces[m].encoder_version}"
                )
            encoders[m] = enc
        try:
            head = load_head(self.settings, mv.version, mv.artifact_path)
        except (OSError, ValueError, EOFError) as exc:
            return f"not_scorable: champion v{mv.version}'s head cannot be read ({exc})"
        batcher = None
        if "text" in encoders:
            key = id(encoders["text"])
            if key not in self._batchers or self._batchers[key].encoder is not encoders["text"]:
                self._batchers[key] = EncodeBatcher(encoders["text"])
            batcher = self._batchers[key]
        return LoadedChampion(
            mv.id, mv.version, head, [str(c) for c in head.classes_], layout, encoders, batcher
        )

    @staticmethod
    def score(loaded: LoadedChampion, text: str | None, media: Sequence[ScanMedia]) -> ModelScores:
        """Per-class probabilities of the content: the highest over each media file scored with
        the text (a post with one bad picture among good ones is as bad as that picture)."""
        text_vec = None
        if text is not None and "text" in loaded.encoders:
            text_vec = (
                loaded.text_batcher.encode_one(text)
                if loaded.text_batcher is not None
                else loaded.encoders["text"].encode([text])[0]
            )
        rows: list[dict[str, np.ndarray | None]] = []
        for f in media:
            enc = loaded.encoders.get(f.modality)
            if enc is None:
                continue
            rows.append({"text": text_vec, f.modality: enc.encode([f.path])[0]})
        if not rows and text_vec is not None:
            rows.append({"text": text_vec})
        if not rows:
            raise NotScorable(
                "the content has no modality the champion reads (" + ", ".join(loaded.layout) + ")"
            )
        fused = np.stack(
            [
                fuse_one({m: v for m, v in row.items() if m in loaded.layout}, loaded.layout)
                for row in rows
            ]
        )
        probs = np.asarray(loaded.head.predict_proba(fused), dtype=np.float64).max(axis=0)
        return ModelScores(
            model_version=loaded.version,
            model_version_id=loaded.model_version_id,
            scores={c: float(p) for c, p in zip(loaded.classes, probs, strict=True)},
        )
