"""Texts of concurrent scans share encoder calls, each caller gets its own vector, and one bad
text fails only its own caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from scan_builders import WordEncoder

from workbench.services.scan.batching import EncodeBatcher


class SlowEncoder(WordEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self._lock = threading.Lock()

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        with self._lock:
            self.batches.append(len(batch))
        if any("bad" in t for t in batch):
            raise ValueError("cannot encode")
        time.sleep(0.05)
        return super().encode(batch)


def test_concurrent_texts_share_calls_and_get_their_own_vectors() -> None:
    enc = SlowEncoder()
    batcher = EncodeBatcher(enc)
    texts = [f"text {i}" for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(batcher.encode_one, texts))
    want = WordEncoder().encode(texts)
    assert np.allclose(np.stack(got), want)
    assert sum(enc.batches) == 16 and len(enc.batches) < 16 and max(enc.batches) > 1


def test_a_bad_text_fails_only_its_caller() -> None:
    batcher = EncodeBatcher(SlowEncoder())
    texts = ["good 1", "bad one", "good 2", "good 3"]

    def encode(t: str) -> object:
        try:
            return batcher.encode_one(t)
        except ValueError as exc:
            return exc

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(encode, texts))
    assert isinstance(results[1], ValueError)
    assert all(isinstance(r, np.ndarray) for i, r in enumerate(results) if i != 1)


def test_an_interrupt_reaches_the_caller_and_leaves_the_batcher_usable() -> None:
    class Interrupting(WordEncoder):
        def encode(self, batch: Sequence[str]) -> np.ndarray:
            if "stop" in batch:
                raise KeyboardInterrupt("simulated")
            return super().encode(batch)

    batcher = EncodeBatcher(Interrupting())
    with pytest.raises(KeyboardInterrupt):
        batcher.encode_one("stop")
    assert batcher.encode_one("fine").shape == (8,)
