"""Append-only segment files holding a space's vectors; the database says which row is live.

Why segments: a run writes one file per batch (temp file + rename), then commits the rows that
point into it. A crash before the commit leaves an unreferenced segment that the next run
deletes; a crash after it leaves nothing to repair. Vectors are never rewritten in place.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np


class SegmentStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def folder(self) -> Path:
        return self.root / "segments"

    def write(self, vectors: np.ndarray) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"seg-{uuid.uuid4().hex}"
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.ascontiguousarray(vectors, dtype=np.float32))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.folder / f"{name}.npy")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return name

    def read(self, refs: Iterable[tuple[str, int]], dim: int) -> np.ndarray:
        """Vectors for (segment, row) pairs, in the given order."""
        refs = list(refs)
        out = np.empty((len(refs), dim), dtype=np.float32)
        by_segment: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for pos, (seg, row) in enumerate(refs):
            by_segment[seg].append((pos, row))
        for seg, pairs in by_segment.items():
            arr = np.load(self.folder / f"{seg}.npy", mmap_mode="r")
            positions = np.fromiter((p for p, _ in pairs), dtype=np.int64, count=len(pairs))
            rows = np.fromiter((r for _, r in pairs), dtype=np.int64, count=len(pairs))
            out[positions] = arr[rows]
        return out

    def collect_garbage(self, live: set[str]) -> int:
        """Delete segments no row points to (left by a crash, or fully superseded)."""
        if not self.folder.exists():
            return 0
        removed = 0
        for path in self.folder.iterdir():
            if path.name.startswith(".tmp-") or (path.suffix == ".npy" and path.stem not in live):
                path.unlink(missing_ok=True)
                removed += 1
        return removed
