"""The one encoder interface: `encode(batch) -> float32 [n, dim]`, L2-normalised rows."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from workbench.errors import WorkbenchError

# Files whose bytes decide what a Hugging Face model directory computes.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".pt", ".pth", ".msgpack", ".h5")
_CONFIG_NAMES = ("config.json", "preprocessor_config.json", "tokenizer.json", "vocab.txt")


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

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "modality": self.modality, "version": self.version, "dim": self.dim}


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2 and x.shape[0] == 0:
        return x
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def quiet_transformers() -> None:
    """No weight-loading progress bars or advisory warnings on stderr: the CLI owns stderr."""
    from transformers.utils import logging  # here, not at the top: transformers loads slowly

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def load_hf_model_dir(model_path: str | Path | None, *, what: str) -> Path:
    """Check that a local Hugging Face model directory is there before transformers tries a hub
    download (`local_files_only` would only say "not found in cache")."""
    if not model_path:
        raise WorkbenchError(f"no local directory configured for the {what}")
    path = Path(model_path).expanduser()
    if not path.is_dir():
        raise WorkbenchError(f"the {what} directory {path} does not exist")
    if not (path / "config.json").is_file():
        raise WorkbenchError(
            f"{path} is not a Hugging Face model directory (no config.json); save one with "
            "`model.save_pretrained(dir)` and the processor with `processor.save_pretrained(dir)`"
        )
    quiet_transformers()
    return path


def model_fingerprint(path: Path, length: int = 12) -> str:
    """sha256 over the weight and config files of a model directory, so a new checkpoint in the
    same folder gets a new encoder version (and its items are re-embedded)."""
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.name in _CONFIG_NAMES)
    )
    for p in files:
        digest.update(str(p.relative_to(path)).encode())
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:length]
