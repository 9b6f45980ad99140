"""The one encoder interface: `encode(batch) -> float32 [n, dim]`, L2-normalised rows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np


class Encoder(ABC):
    """A frozen encoder for one modality.

    `id` names the encoder in project settings; `version` changes whenever its vectors would
    change (weights, preprocessing, pooling), so stored vectors of an older version get redone.
    """

    id: ClassVar[str]
    modality: ClassVar[str]
    version: str
    dim: int

    @abstractmethod
    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        """Encode a batch; returns float32 [len(batch), dim] with unit-length rows."""


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
