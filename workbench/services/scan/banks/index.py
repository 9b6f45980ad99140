"""PDQ search: FAISS's multi-index hashing (what HMA uses) and the brute-force reference it is
tested against. Both answer every stored hash within a Hamming distance of each query."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import faiss
import numpy as np

from workbench.services.scan.banks.signals import PDQ_BITS, PDQ_MATCH_DISTANCE

PDQ_BYTES = PDQ_BITS // 8
# (position in the index, Hamming distance), nearest first.
Hits = list[tuple[int, int]]


def pdq_array(hexes: Sequence[str]) -> np.ndarray:
    """PDQ hex strings as an (n, 32) uint8 array: the byte layout FAISS binary indexes take."""
    if not hexes:
        return np.zeros((0, PDQ_BYTES), dtype=np.uint8)
    return np.frombuffer(bytes.fromhex("".join(hexes)), dtype=np.uint8).reshape(-1, PDQ_BYTES)


class PDQIndex(ABC):
    """Hashes at fixed positions 0..n-1; `search` finds those within `threshold` of each query."""

    def __init__(self, hashes: np.ndarray) -> None:
        if hashes.ndim != 2 or hashes.shape[1] != PDQ_BYTES or hashes.dtype != np.uint8:
            raise ValueError(f"PDQ hashes are an (n, {PDQ_BYTES}) uint8 array, got {hashes.shape}")
        self.size = len(hashes)

    @abstractmethod
    def search(self, queries: np.ndarray, threshold: int = PDQ_MATCH_DISTANCE) -> list[Hits]:
        """For each query row, the stored hashes within `threshold` bits, nearest first (ties by
        position, so two implementations can be compared list for list)."""


def _sorted_hits(positions: np.ndarray, distances: np.ndarray) -> Hits:
    order = np.lexsort((positions, distances))
    return [(int(positions[i]), int(distances[i])) for i in order]


class BruteForcePDQIndex(PDQIndex):
    """The reference: XOR every stored hash with the query and count the bits. Obviously right,
    and linear in the bank, so it checks the fast index in tests and the benchmark."""

    def __init__(self, hashes: np.ndarray) -> None:
        super().__init__(hashes)
        # Four 64-bit words per hash: numpy's popcount on words is ~8x fewer operations.
        self._words = np.ascontiguousarray(hashes).view(np.uint64)

    def distances(self, query: np.ndarray) -> np.ndarray:
        """Hamming distance from one query to every stored hash."""
        q = np.ascontiguousarray(query, dtype=np.uint8).view(np.uint64)
        return np.bitwise_count(self._words ^ q).sum(axis=1, dtype=np.int32)

    def search(self, queries: np.ndarray, threshold: int = PDQ_MATCH_DISTANCE) -> list[Hits]:
        out = []
        for query in queries:
            d = self.distances(query)
            hit = np.flatnonzero(d <= threshold)
            out.append(_sorted_hits(hit, d[hit]))
        return out


class MultiHashPDQIndex(PDQIndex):
    """FAISS `IndexBinaryMultiHash` configured as HMA configures it (pytx
    threatexchange/signal_type/pdq/pdq_faiss_matcher.py, `PDQMultiHashIndex`): 16 hash tables,
    each keyed on 16 of the 256 bits, probing keys up to `nflip = threshold // 16` bits away.

    Why it is exact for threshold <= 31: split a hash into 16 slices of 16 bits; if two hashes
    differ in at most 31 bits, some slice differs in at most one bit (else they differ in >= 32),
    so probing every key within one flip of each slice finds every such hash (multi-index
    hashing, Norouzi et al. 2012). Larger thresholds raise nflip and stay exact.
    """

    NHASH = 16

    def __init__(self, hashes: np.ndarray) -> None:
        super().__init__(hashes)
        self._index = faiss.IndexBinaryMultiHash(PDQ_BITS, self.NHASH, PDQ_BITS // self.NHASH)
        self._index.nflip = PDQ_MATCH_DISTANCE // self.NHASH
        if len(hashes):
            self._index.add(np.ascontiguousarray(hashes))

    def search(self, queries: np.ndarray, threshold: int = PDQ_MATCH_DISTANCE) -> list[Hits]:
        queries = np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, PDQ_BYTES)
        if self.size == 0:
            return [[] for _ in range(len(queries))]
        nflip = threshold // self.NHASH
        if self._index.nflip != nflip:  # scans all ask 31; only tests and tools ask otherwise
            self._index.nflip = nflip
        # range_search keeps distances strictly below the radius.
        limits, distances, labels = self._index.range_search(queries, threshold + 1)
        return [
            _sorted_hits(labels[limits[i] : limits[i + 1]], distances[limits[i] : limits[i + 1]])
            for i in range(len(queries))
        ]
