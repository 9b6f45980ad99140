"""Image encoders: the offline `image-stats` default (no weights) and `clip` for any local
CLIP-family model directory, whose text tower also embeds text queries for text-to-image search.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench.encoders.base import Encoder, l2_normalise, load_hf_model_dir, model_fingerprint
from workbench.encoders.media import DEFAULT_MAX_IMAGE_PIXELS, ImageInput, load_image
from workbench.errors import WorkbenchError

# Heavy libraries (torch, transformers, PIL, scipy) are imported inside the functions that use
# them, so the CLI starts without loading them.

THUMB = 64  # every statistic is computed on a 64x64 thumbnail: enough for layout and colour
L_BINS, A_BINS, B_BINS = 4, 6, 6
AB_RANGE = 64.0  # |a|, |b| beyond this are rare in photos; they fall into the outer bins
DCT_KEEP = 8
ORIENT_BINS = 8
BLOCK_WEIGHTS = {"colour": 1.0, "layout": 1.0, "edges": 1.0}


def _lab_transform() -> Any:
    from PIL import ImageCms

    return ImageCms.buildTransformFromOpenProfiles(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )


class ImageStatsEncoder(Encoder):
    """Offline image statistics: a weightless default, so the loop runs on a fresh machine.

    What it captures, each block L2-normalised and then concatenated with equal weight (so the
    cosine of two vectors is the mean of the three block cosines):

    - colour (144 dims): a joint CIELAB histogram (4 lightness x 6 a x 6 b bins) of the 64x64
      thumbnail, square-rooted so that the cosine of two histograms is their Bhattacharyya
      coefficient. Lab rather than RGB because distances there follow perceived colour.
    - layout (63 dims): the 8x8 lowest-frequency 2-D DCT coefficients of a 32x32 grayscale
      thumbnail, without the DC term (the basis of pHash): where the light and dark masses are,
      independent of overall brightness and contrast.
    - edges (32 dims): a histogram of gradient orientations (8 unsigned bins, Sobel, weighted by
      gradient magnitude) in each quadrant of the 64x64 grayscale thumbnail: stripes, text-like
      texture, smooth vs busy regions.

    What it does not capture: meaning. It cannot tell a weapon from a guitar, a wound from a
    ketchup stain, or nudity from a beige wall; two photos of the same object from different
    angles can be far apart and two unrelated photos with the same palette close. It finds
    re-encodes, crops of the same layout, recoloured copies and visually similar templates (memes
    with the same background), which is what near-duplicate grouping and diversity sampling need.
    For semantic search configure a CLIP-family model (`encoders.image = "clip"`).
    """

    id = "image-stats"
    modality = "image"
    dim = L_BINS * A_BINS * B_BINS + (DCT_KEEP * DCT_KEEP - 1) + 4 * ORIENT_BINS
    version = "image-stats/v1/lab4x6x6-dct8-orient8x4"

    def __init__(self, max_pixels: int | None = None) -> None:
        self.max_pixels = max_pixels or DEFAULT_MAX_IMAGE_PIXELS
        self._lab = _lab_transform()

    def encode(self, batch: Sequence[ImageInput]) -> np.ndarray:
        out = np.zeros((len(batch), self.dim), dtype=np.float32)
        for i, source in enumerate(batch):
            img = load_image(source, max_pixels=self.max_pixels, draft_size=(2 * THUMB, 2 * THUMB))
            out[i] = self.features(img)
        return l2_normalise(out)

    def features(self, img: Any) -> np.ndarray:
        """The unnormalised-by-row but block-normalised feature vector of one RGB PIL image."""
        from PIL import Image, ImageCms

        thumb = img.resize((THUMB, THUMB), Image.Resampling.BILINEAR, reducing_gap=2.0)
        lab = np.asarray(ImageCms.applyTransform(thumb, self._lab))
        gray = np.asarray(thumb.convert("L"), dtype=np.float32) / 255.0
        blocks = {
            "colour": _lab_histogram(lab),
            "layout": _dct_layout(gray),
            "edges": _orientation_histogram(gray),
        }
        parts = [np.sqrt(BLOCK_WEIGHTS[name]) * _unit(vec) for name, vec in blocks.items()]
        return np.concatenate(parts).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else v


def _lab_histogram(lab: np.ndarray) -> np.ndarray:
    # Pillow's LAB mode: L scaled to 0..255, a and b are signed bytes stored as uint8.
    lightness = lab[..., 0].astype(np.float32) * (100.0 / 255.0)
    a = lab[..., 1].view(np.int8).astype(np.float32)
    b = lab[..., 2].view(np.int8).astype(np.float32)
    li = np.clip((lightness / 100.0 * L_BINS).astype(int), 0, L_BINS - 1)
    ai = np.clip(((a + AB_RANGE) / (2 * AB_RANGE) * A_BINS).astype(int), 0, A_BINS - 1)
    bi = np.clip(((b + AB_RANGE) / (2 * AB_RANGE) * B_BINS).astype(int), 0, B_BINS - 1)
    flat = (li * A_BINS + ai) * B_BINS + bi
    hist = np.bincount(flat.reshape(-1), minlength=L_BINS * A_BINS * B_BINS).astype(np.float64)
    return np.sqrt(hist / hist.sum())


def _dct_layout(gray: np.ndarray) -> np.ndarray:
    from PIL import Image
    from scipy.fft import dctn

    small = np.asarray(
        Image.fromarray((gray * 255).astype(np.uint8)).resize((32, 32), Image.Resampling.BOX),
        dtype=np.float64,
    )
    coeffs = dctn(small, norm="ortho")[:DCT_KEEP, :DCT_KEEP].reshape(-1)
    return coeffs[1:]  # without DC: brightness is in the colour block already


def _orientation_histogram(gray: np.ndarray) -> np.ndarray:
    g = gray.astype(np.float64)
    p = np.pad(g, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    magnitude = np.hypot(gx, gy)
    angle = np.mod(np.arctan2(gy, gx), np.pi)  # unsigned: a dark-to-light edge = light-to-dark
    bins = np.minimum((angle / np.pi * ORIENT_BINS).astype(int), ORIENT_BINS - 1)
    h, w = g.shape
    cells = []
    for rows in (slice(0, h // 2), slice(h // 2, h)):
        for cols in (slice(0, w // 2), slice(w // 2, w)):
            cells.append(
                np.bincount(
                    bins[rows, cols].reshape(-1),
                    weights=magnitude[rows, cols].reshape(-1),
                    minlength=ORIENT_BINS,
                )
            )
    return np.sqrt(np.concatenate(cells))


class ClipImageEncoder(Encoder):
    """Any local CLIP-family directory (CLIP, SigLIP, ...): image tower for images, text tower
    (`encode_text`) for text queries in the same space. Loaded with transformers, offline."""

    id = "clip"
    modality = "image"

    def __init__(self, model_path: str | Path, *, batch_size: int = 16) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        path = load_hf_model_dir(model_path, what="CLIP-family image model")
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        if not hasattr(self.model, "get_image_features"):
            raise WorkbenchError(
                f"{path} holds a {self.model.config.model_type!r} model without an image tower; "
                "the clip encoder needs a CLIP-family model (CLIP, SigLIP, ...)"
            )
        self.image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        try:
            self.tokenizer: Any = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except Exception:  # an image-only export: text queries are then refused
            self.tokenizer = None
        self.batch_size = batch_size
        self._torch = torch
        self.path = path
        self.version = f"clip/{self.model.config.model_type}/{model_fingerprint(path)}"
        self.dim = int(self.encode([_blank_image()]).shape[1])

    def encode(self, batch: Sequence[ImageInput]) -> np.ndarray:
        chunks = []
        with self._torch.inference_mode():
            for start in range(0, len(batch), self.batch_size):
                images = [load_image(x) for x in batch[start : start + self.batch_size]]
                inputs = self.image_processor(images=images, return_tensors="pt")
                feats = self.model.get_image_features(pixel_values=inputs["pixel_values"])
                chunks.append(_features(feats))
        if not chunks:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        return l2_normalise(np.concatenate(chunks))

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Text queries into the image space (text-to-image search)."""
        if self.tokenizer is None:
            raise WorkbenchError(f"{self.path} has no tokenizer, so it cannot embed text queries")
        chunks = []
        with self._torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    return_tensors="pt",
                )
                kwargs = {"input_ids": enc["input_ids"]}
                if "attention_mask" in enc:
                    kwargs["attention_mask"] = enc["attention_mask"]
                chunks.append(_features(self.model.get_text_features(**kwargs)))
        return l2_normalise(np.concatenate(chunks))


def _features(out: Any) -> np.ndarray:
    # transformers < 5 returns the projected tensor; 5.x a model output with it as pooler_output.
    tensor = out if hasattr(out, "numpy") else out.pooler_output
    return tensor.float().numpy()


def _blank_image() -> Any:
    from PIL import Image

    return Image.new("RGB", (32, 32), (127, 127, 127))
