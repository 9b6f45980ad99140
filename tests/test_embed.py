"""`workbench embed`: incremental, resumable, failures recorded per item; similar; near-dups."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest
from builders import make_items, make_project
from sqlalchemy import func, select

from workbench.db.models import Embedding, EmbeddingSpace, EmbeddingStatus, Item
from workbench.encoders.base import Encoder, l2_normalise
from workbench.services.audit import Actor
from workbench.services.projects import get_project
from workbench.services.vectors.embed import embed_project
from workbench.services.vectors.similar import similar_items

TEXTS = [
    f"comment number {n} about {topic}"
    for n, topic in enumerate(["jazz", "football", "crypto", "cooking", "history", "gaming"] * 3)
]


class HashEncoder(Encoder):
    """Deterministic fake: the same text always gives the same unit vector."""

    id = "hash-text"
    modality = "text"

    def __init__(
        self, version: str = "1", fail_on: str | None = None, crash_after: int | None = None
    ) -> None:
        self.version, self.dim = version, 16
        self.fail_on, self.crash_after, self.calls = fail_on, crash_after, 0

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.crash_after is not None and self.calls > self.crash_after:
            raise KeyboardInterrupt("simulated crash")
        rows = []
        for text in batch:
            if self.fail_on and self.fail_on in text:
                raise ValueError(f"cannot decode {text!r}")
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            rows.append(np.random.default_rng(seed).normal(size=self.dim))
        return l2_normalise(np.array(rows))


def lookup(encoder: Encoder):  # type: ignore[no-untyped-def]
    return lambda modality, project: encoder


def counts(db, space_name: str) -> dict[str, int]:
    with db.sessions() as s:
        rows = s.execute(
            select(Embedding.status, func.count())
            .join(EmbeddingSpace, EmbeddingSpace.id == Embedding.space_id)
            .where(EmbeddingSpace.name == space_name)
            .group_by(Embedding.status)
        ).all()
    return {status.value: n for status, n in rows}


def test_embed_is_incremental(db) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        make_items(s, p, TEXTS)
    enc = HashEncoder()
    first = embed_project(db, "p", Actor.system(), encoder_lookup=lookup(enc), batch_size=5)
    assert first.spaces["text"].embedded == len(TEXTS)
    assert first.spaces["fused"].embedded == len(TEXTS)
    assert first.spaces["fused"].indexed == len(TEXTS)
    again = embed_project(db, "p", Actor.system(), encoder_lookup=lookup(enc))
    assert again.spaces["text"].embedded == 0 and again.spaces["text"].up_to_date == len(TEXTS)
    assert again.spaces["fused"].embedded == 0
    # A changed item is redone, and only it.
    with db.sessions.begin() as s:
        item = s.scalar(select(Item).where(Item.external_id == "i3"))
        item.text, item.revision = "completely new words", item.revision + 1
    third = embed_project(db, "p", Actor.system(), encoder_lookup=lookup(enc))
    assert third.spaces["text"].embedded == 1 and third.spaces["fused"].embedded == 1
    # A new encoder version redoes everything.
    fourth = embed_project(db, "p", Actor.system(), encoder_lookup=lookup(HashEncoder("2")))
    assert fourth.spaces["text"].embedded == len(TEXTS)
    assert counts(db, "text") == {"ok": len(TEXTS)}
    assert third.spaces["text"].up_to_date == len(TEXTS) - 1
    # New items are embedded and the old vectors all count as up to date (they were once
    # reported short by the number of new items).
    with db.sessions.begin() as s:
        make_items(
            s, get_project(s, "p"), ["a brand new item", "and another new one"], prefix="new"
        )
    fifth = embed_project(db, "p", Actor.system(), encoder_lookup=lookup(HashEncoder("2")))
    assert fifth.spaces["text"].embedded == 2
    assert fifth.spaces["text"].up_to_date == len(TEXTS)


def test_embed_resumes_after_a_crash_without_duplicates_or_losses(db) -> None:
    with db.sessions.begin() as s:
        make_items(s, make_project(s), TEXTS)
    with pytest.raises(KeyboardInterrupt):
        embed_project(
            db, "p", Actor.system(), encoder_lookup=lookup(HashEncoder(crash_after=2)), batch_size=4
        )
    assert counts(db, "text") == {"ok": 8}  # two batches committed, the third never was
    report = embed_project(
        db, "p", Actor.system(), encoder_lookup=lookup(HashEncoder()), batch_size=4
    )
    assert report.spaces["text"].embedded == len(TEXTS) - 8
    assert counts(db, "text") == {"ok": len(TEXTS)}
    with db.sessions() as s:
        space = s.scalar(select(EmbeddingSpace).where(EmbeddingSpace.name == "text"))
        live = set(s.scalars(select(Embedding.segment).where(Embedding.space_id == space.id)))
    folder = db.settings.resolved_home / "vectors" / str(space.project_id) / str(space.id)
    on_disk = {p.stem for p in (folder / "segments").glob("*.npy")}
    assert on_disk == live  # nothing orphaned, nothing missing


def test_undecodable_input_is_recorded_and_the_run_goes_on(db) -> None:
    with db.sessions.begin() as s:
        make_items(s, make_project(s), TEXTS)
    report = embed_project(
        db, "p", Actor.system(), encoder_lookup=lookup(HashEncoder(fail_on="crypto")), batch_size=6
    )
    bad = [t for t in TEXTS if "crypto" in t]
    assert report.failed == len(bad)
    assert {f["space"] for f in report.failures} == {"text"}
    assert all("cannot decode" in f["reason"] for f in report.failures)
    assert counts(db, "text") == {"ok": len(TEXTS) - len(bad), "failed": len(bad)}
    with db.sessions() as s:
        errors = s.scalars(
            select(Embedding.error).where(Embedding.status == EmbeddingStatus.failed)
        ).all()
    assert all("crypto" in e for e in errors)


def test_similar_returns_neighbours_best_first_without_the_query(db) -> None:
    with db.sessions.begin() as s:
        make_items(s, make_project(s), TEXTS)
    embed_project(db, "p", Actor.system(), encoder_lookup=lookup(HashEncoder()))
    with db.sessions() as s:
        out = similar_items(s, db.settings, get_project(s, "p"), external_id="i0", k=5)
    assert out["query"]["external_id"] == "i0"
    scores = [n["score"] for n in out["neighbours"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert "i0" not in [n["external_id"] for n in out["neighbours"]]


def test_identical_content_is_grouped_as_near_duplicates(db) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        make_items(s, p, ["free gift cards here", "free gift cards here", "jazz tonight"])
    report = embed_project(db, "p", Actor.system(), encoder_lookup=lookup(HashEncoder()))
    assert report.near_duplicate_items == 2
    with db.sessions() as s:
        rows = dict(s.execute(select(Item.external_id, Item.near_duplicate_of_id)).all())
        ids = dict(s.execute(select(Item.external_id, Item.id)).all())
    assert rows["i1"] == ids["i0"] and rows["i0"] is None and rows["i2"] is None
