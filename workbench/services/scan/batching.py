"""Encode the texts of concurrent scans together: while the encoder runs one batch, the texts
that arrive wait and go in the next, so a busy server makes one encoder call for many scans.

No timer: a lone scan is encoded at once, so batching adds no latency when idle. Whoever finds
the encoder free takes every waiting text (its own among them, up to `max_batch`) and runs the
call; the others wait on a condition. The default text encoder's vectors do not depend on the
batch they were encoded in (see workbench/encoders/text.py), so a scan's score does not either.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

import numpy as np

from workbench.encoders.base import Encoder


class EncodeBatcher:
    def __init__(self, encoder: Encoder, max_batch: int = 32) -> None:
        self.encoder = encoder
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._pending: list[tuple[Any, Future[np.ndarray]]] = []
        self._busy = False
        self.calls = 0  # encoder calls made, for tests and benchmarks

    def encode_one(self, item: Any) -> np.ndarray:
        """The vector of `item`, encoded alone or with whatever else is waiting."""
        future: Future[np.ndarray] = Future()
        with self._cond:
            self._pending.append((item, future))
            while not future.done():
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                self._cond.release()
                try:
                    self._run(batch)
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._cond.notify_all()
        return future.result()

    def _run(self, batch: list[tuple[Any, Future[np.ndarray]]]) -> None:
        self.calls += 1
        try:
            vectors = self.encoder.encode([item for item, _ in batch])
        except BaseException as exc:
            if not isinstance(exc, Exception):  # an interrupt: every waiter learns of it
                for _, future in batch:
                    future.set_exception(exc)
                raise
            # One bad input must not fail the others: encode them one by one.
            for item, future in batch:
                try:
                    future.set_result(self.encoder.encode([item])[0])
                except Exception as exc:
                    future.set_exception(exc)
            return
        for (_, future), vector in zip(batch, vectors, strict=True):
            future.set_result(vector)
