"""PDQ lookup benchmark: the bank index (FAISS multi-index hashing) against the brute-force
reference and HMA's own index, on random hashes and on hashes of generated images and their
altered copies (clustered, as a real bank's near-duplicates are)."""

from __future__ import annotations

import importlib.util
import io
import multiprocessing
import resource
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from workbench.bench.stats import percentile
from workbench.progress import ProgressFactory, no_progress
from workbench.services.scan.banks.index import (
    PDQ_BYTES,
    BruteForcePDQIndex,
    MultiHashPDQIndex,
    PDQIndex,
    pdq_array,
)
from workbench.services.scan.banks.signals import PDQ_MATCH_DISTANCE, pdq_of_pixels

# --- images -------------------------------------------------------------------------------------


def scene(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A picture with a sky-like gradient, a few filled shapes and grain: structure PDQ keys on,
    unlike pure noise (whose hash any re-encode scrambles)."""
    rng = np.random.default_rng(seed)
    w, h = size
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    pixels = np.broadcast_to((1 - t) * top + t * bottom, (h, w, 3)).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(20, 40))):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        x1, y1 = x0 + int(rng.integers(10, w // 3)), y0 + int(rng.integers(10, h // 3))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=colour)
    grain = rng.normal(0.0, 2.0, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8), "RGB")


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def _crop(image: Image.Image, fraction: float) -> Image.Image:
    w, h = image.size
    dx, dy = int(w * fraction), int(h * fraction)
    return image.crop((dx, dy, w - dx, h - dy))


# The edits an upload pipeline sees on a re-posted picture; PDQ is built to survive them.
ALTERATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "resize_half": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.BILINEAR),
    # 1 % off each side (4 % of the area): PDQ is not built for larger crops, which move the
    # picture under its 16 x 16 DCT grid.
    "crop_1pct_each_side": lambda im: _crop(im, 0.01),
    "jpeg_q50": lambda im: _jpeg(im, 50),
    "brighter_10pct": lambda im: ImageEnhance.Brightness(im).enhance(1.1),
}


def image_pdq(image: Image.Image) -> str:
    return pdq_of_pixels(np.asarray(image.convert("RGB")))[0]


def clustered_hashes(images: int, seed: int = 0) -> tuple[list[str], dict[str, list[str]]]:
    """PDQ of `images` generated scenes, and per alteration the PDQ of each scene's altered copy
    (same order)."""
    originals: list[str] = []
    altered: dict[str, list[str]] = {name: [] for name in ALTERATIONS}
    for i in range(images):
        image = scene(seed * 1_000_003 + i)
        originals.append(image_pdq(image))
        for name, alter in ALTERATIONS.items():
            altered[name].append(image_pdq(alter(image)))
    return originals, altered


# --- hashes -------------------------------------------------------------------------------------


def random_hashes(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(n, PDQ_BYTES), dtype=np.uint8)


def flip_bits(hashes: np.ndarray, flips: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Copies of `hashes` with `flips[i]` distinct random bits of row i inverted."""
    bits = np.unpackbits(hashes, axis=1)
    for row, k in enumerate(flips):
        bits[row, rng.choice(bits.shape[1], size=int(k), replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the run ------------------------------------------------------------------------------------


def _build_ours(hashes: np.ndarray) -> PDQIndex:
    return MultiHashPDQIndex(hashes)


def _ours(index: PDQIndex, q: np.ndarray) -> set[int]:
    return {pos for pos, _ in index.search(q[None, :], PDQ_MATCH_DISTANCE)[0]}


def _build_hma_faiss(hashes: np.ndarray) -> Any:
    import faiss

    index = faiss.IndexBinaryMultiHash(256, 16, 16)
    index.add(hashes)
    return index


def _hma_faiss(index: Any, q: np.ndarray) -> set[int]:
    # As pytx's PDQMultiHashIndex.search: nflip = threshold // nhash, radius threshold + 1.
    index.nflip = PDQ_MATCH_DISTANCE // 16
    limits, _, labels = index.range_search(q[None, :], PDQ_MATCH_DISTANCE + 1)
    return set(labels[limits[0] : limits[1]].tolist())


def _build_pytx(hashes: np.ndarray) -> Any:
    from threatexchange.signal_type.pdq.pdq_index import PDQIndex as PytxPDQIndex

    # pytx takes hex strings; converting them is part of what its users pay to build.
    return PytxPDQIndex(entries=((row.tobytes().hex(), i) for i, row in enumerate(hashes)))


def _pytx(index: Any, q: np.ndarray) -> set[int]:
    return {m.metadata for m in index.query(q.tobytes().hex())}


def pytx_available() -> bool:
    """Whether python-threatexchange is installed: optional, only this benchmark uses it."""
    return importlib.util.find_spec("threatexchange") is not None


_CONTENDERS: dict[
    str, tuple[Callable[[np.ndarray], Any], Callable[[Any, np.ndarray], set[int]]]
] = {
    "workbench": (_build_ours, _ours),
    "hma_pytx_pdqindex": (_build_pytx, _pytx),
    "hma_faiss_multihash": (_build_hma_faiss, _hma_faiss),
}


def measure_index(
    name: str, stored_path: str, queries_path: str
) -> tuple[dict[str, Any], list[list[int]]]:
    """Build one contender's index and time each query, in a fresh process (the caller's job),
    so its peak RSS and index memory are its own and not what an earlier index left behind."""
    build, lookup = _CONTENDERS[name]
    stored, queries = np.load(stored_path), np.load(queries_path)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    index = build(stored)
    build_s = time.perf_counter() - t0
    index_mb = _rss_mb() - rss0
    found, times = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(sorted(lookup(index, q)))
        times.append((time.perf_counter() - t) * 1000)
    return {
        "build_seconds": round(build_s, 2),
        "lookup_p50_ms": round(percentile(times, 50), 3),
        "lookup_p95_ms": round(percentile(times, 95), 3),
        "index_memory_mb": round(index_mb, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }, found


def _in_child(
    name: str, stored_path: str, queries_path: str
) -> tuple[dict[str, Any], list[list[int]]]:
    # spawn, not fork: a forked child starts with the parent's pages (and its peak RSS).
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure_index, name, stored_path, queries_path).result()


def run_pdq_benchmark(
    *,
    n: int,
    queries: int = 1000,
    images: int = 200,
    seed: int = 0,
    progress: ProgressFactory = no_progress,
) -> dict[str, Any]:
    """Time the bank index on `n` stored hashes: random ones plus `images` generated scenes, with
    queries that are altered copies (of scenes and of random hashes, 0-31 bits flipped) and
    strangers; recall of the altered copies is measured against the brute-force reference."""
    rng = np.random.default_rng(seed)
    bar = progress(total=images, desc="hashing generated images")
    originals: list[str] = []
    altered: dict[str, list[str]] = {name: [] for name in ALTERATIONS}
    for i in range(images):
        o, a = clustered_hashes(1, seed=seed * 7919 + i)
        originals += o
        for name in ALTERATIONS:
            altered[name] += a[name]
        bar.update(1)
    bar.close()
    scene_hashes = pdq_array(originals)
    stored = random_hashes(n - len(scene_hashes), rng)
    stored = np.concatenate([scene_hashes, stored])  # scenes at positions 0..images-1
    # Queries: a third altered scenes, a third random stored hashes with 0-31 bits flipped, a
    # third strangers (nothing within 31: the common case of an upload pipeline).
    n_scene = min(queries // 3, images * len(ALTERATIONS))
    scene_queries = pdq_array([h for name in ALTERATIONS for h in altered[name]])[:n_scene]
    n_flip = queries // 3
    picked = rng.choice(np.arange(images, n), size=n_flip, replace=False)
    flipped = flip_bits(stored[picked], rng.integers(0, PDQ_MATCH_DISTANCE + 1, n_flip), rng)
    strangers = random_hashes(queries - n_scene - n_flip, rng)
    query_rows = np.concatenate([scene_queries, flipped, strangers])

    brute = BruteForcePDQIndex(stored)
    bar = progress(total=len(query_rows), desc="brute-force reference")
    truth, brute_ms = [], []
    for q in query_rows:
        t = time.perf_counter()
        truth.append({pos for pos, _ in brute.search(q[None, :])[0]})
        brute_ms.append((time.perf_counter() - t) * 1000)
        bar.update(1)
    bar.close()
    del brute
    near = [i for i in range(len(query_rows)) if truth[i]]

    def recall(found: list[set[int]]) -> float:
        want = sum(len(truth[i]) for i in near)
        return round(sum(len(truth[i] & found[i]) for i in near) / max(1, want), 4)

    results: dict[str, Any] = {
        "stored_hashes": n,
        "scene_hashes": images,
        "alterations": list(ALTERATIONS),
        "queries": {
            "altered_scenes": n_scene,
            "flipped_random": n_flip,
            "strangers": len(strangers),
            "with_a_true_match": len(near),
        },
        "threshold": PDQ_MATCH_DISTANCE,
        "brute_force_reference": {
            "lookup_p50_ms": round(percentile(brute_ms, 50), 3),
            "lookup_p95_ms": round(percentile(brute_ms, 95), 3),
        },
        # How many altered scene copies PDQ itself keeps within 31 bits of their original.
        "altered_scene_within_threshold": round(
            sum(1 for i in range(n_scene) if i % images in truth[i]) / max(1, n_scene), 4
        ),
    }
    names = ["workbench", "hma_faiss_multihash"]
    if pytx_available():
        names.insert(1, "hma_pytx_pdqindex")
    else:
        results["hma_pytx_pdqindex"] = "not installed: HMA's FAISS setup stands in"
    with tempfile.TemporaryDirectory(prefix="bench-pdq-") as tmp:
        stored_path, queries_path = f"{tmp}/stored.npy", f"{tmp}/queries.npy"
        np.save(stored_path, stored)
        np.save(queries_path, query_rows)
        del stored
        for name in names:
            bar = progress(total=1, desc=f"{name}: build and {len(query_rows)} lookups")
            stats, found = _in_child(name, stored_path, queries_path)
            bar.update(1)
            bar.close()
            results[name] = {**stats, "recall_vs_brute_force": recall([set(f) for f in found])}
    results["hma_reference_figures_from_issue"] = {
        "build_seconds": 6.6,
        "lookup_p50_ms": 0.74,
        "lookup_p95_ms": 0.90,
        "peak_gb": 1.3,
    }
    return results
