"""One fused vector per item from its per-modality vectors: weighted concatenation, L2-normalised.

Method. Each modality m has a fixed slot of `layout[m]` dimensions (the project's layout, in a
fixed order). An item's fused vector is

    f = concat_m( sqrt(w_m) * v_m  if m is present, else zeros ) / sqrt( sum_{m present} w_m )

where every v_m is unit length (encoders return L2-normalised rows; `fuse` normalises again to be
safe). So f is unit length, and for two items a, b:

    cos(f_a, f_b) = sum_{m in both} w_m * cos(v_a_m, v_b_m) / sqrt(W_a * W_b),   W = sum of w_m
                                                                                 over present m

Property: when two items have the same modalities, the cosine of their fused vectors is exactly
the weighted mean of their per-modality cosines. A modality only one of them has counts as
cosine 0 (it adds nothing to the dot product) and the denominator is the geometric mean of the
two weight totals. Why concatenation rather than averaging: the modality spaces are unrelated
(a MiniLM axis means nothing in a CLIP space), so adding vectors would mix meaningless
coordinates; concatenation keeps each space's geometry intact and the per-modality vectors stay
separately searchable.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# Stored with every fused vector; change it whenever the method or the default weights change.
FUSION_VERSION = "concat-sqrtw-l2/v1"
DEFAULT_WEIGHT = 1.0


def fuse(
    per_modality: Mapping[str, np.ndarray | None],
    present: Mapping[str, np.ndarray],
    layout: Mapping[str, int],
    weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Fuse n items' modality vectors into float32 [n, sum(layout.values())], unit-length rows.

    `per_modality[m]` is [n, layout[m]] (rows of absent items are ignored) or None when no item
    has m; `present[m]` is a bool [n] mask. Slots follow the order of `layout`. An item with no
    modality at all gets a zero row (there is nothing to compare it by).
    """
    weights = weights or {}
    n = _batch_size(per_modality, present)
    dim = sum(layout.values())
    out = np.zeros((n, dim), dtype=np.float32)
    total_weight = np.zeros(n, dtype=np.float64)
    start = 0
    for m, width in layout.items():
        w = float(weights.get(m, DEFAULT_WEIGHT))
        if w < 0:
            raise ValueError(f"fusion weight of {m!r} must be >= 0, got {w}")
        vecs = per_modality.get(m)
        mask = present.get(m)
        if vecs is not None and mask is not None and mask.any() and w > 0:
            vecs = np.asarray(vecs, dtype=np.float32)
            if vecs.shape != (n, width):
                raise ValueError(f"{m} vectors have shape {vecs.shape}, expected {(n, width)}")
            mask = np.asarray(mask, dtype=bool)
            norms = np.linalg.norm(vecs[mask], axis=1, keepdims=True)
            out[mask, start : start + width] = np.sqrt(w) * vecs[mask] / np.maximum(norms, 1e-12)
            total_weight[mask] += w
        start += width
    scale = np.where(total_weight > 0, 1.0 / np.sqrt(np.maximum(total_weight, 1e-300)), 0.0)
    return (out * scale[:, None]).astype(np.float32)


def fuse_one(
    vectors: Mapping[str, np.ndarray | None],
    layout: Mapping[str, int],
    weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """The fused vector of one item from {modality: vector or None}."""
    per = {m: None if v is None else np.asarray(v, np.float32)[None, :] for m, v in vectors.items()}
    present = {m: np.array([v is not None]) for m, v in vectors.items()}
    for m, width in layout.items():
        if per.get(m) is None:
            per[m] = np.zeros((1, width), np.float32)
            present[m] = np.array([False])
    return fuse(per, present, layout, weights)[0]


def _batch_size(
    per_modality: Mapping[str, np.ndarray | None], present: Mapping[str, np.ndarray]
) -> int:
    for mask in present.values():
        return len(mask)
    for vecs in per_modality.values():
        if vecs is not None:
            return len(vecs)
    return 0
