"""Encoder throughput end to end: text variants (model loading included, with the cosine each
costs against the fp32 reference) and the offline image, audio and video defaults on made media.

Text times every variant on the same texts in the same run, so speed is never quoted without the
quality it costs. Media are generated (no data set needed). torch, onnxruntime and the encoders
load inside the functions: the CLI imports this module for TEXT_VARIANTS on every start.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench.synthetic_media import make_audio, make_photo, make_video
from workbench.errors import WorkbenchError

TEXT_VARIANTS = (
    "fp32",
    "torch-int8",
    "onnx-fp32",
    "onnx-fp32-fused",
    "onnx-int8",
    "onnx-int8-fused",
    "onnx-int8-mixed",
    "onnx-int8-block",
)

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


def text_encoder_factory(variant: str, cache: Path | None = None) -> Callable[[], Any]:
    """A function that loads the named text variant (so its loading can be timed)."""
    from workbench.encoders.text import ONNX_VARIANTS, MiniLMOnnxEncoder, MiniLMTorchEncoder

    if variant == "fp32":
        return lambda: MiniLMTorchEncoder()
    if variant == "torch-int8":
        return lambda: MiniLMTorchEncoder(int8=True)
    if variant in ONNX_VARIANTS:
        return lambda: MiniLMOnnxEncoder(variant, cache=cache)
    raise WorkbenchError(
        f"unknown text variant {variant!r}; expected some of: {', '.join(TEXT_VARIANTS)}"
    )


def read_texts(data: Path, column: str, limit: int) -> list[str]:
    """The first `limit` values of a CSV's text column (empty cells as "")."""
    import pandas as pd

    if not data.is_file():
        raise WorkbenchError(f"no such file: {data}")
    frame = pd.read_csv(data, usecols=lambda c: c == column, nrows=limit)
    if column not in frame.columns:
        raise WorkbenchError(f"{data} has no column {column!r}")
    texts = frame[column].fillna("").astype(str).tolist()
    if not texts:
        raise WorkbenchError(f"{data} has no rows")
    return texts


def run_text_benchmark(
    texts: list[str], variants: list[str], *, threads: int | None, progress: Progress = _quiet
) -> dict[str, Any]:
    """Each variant: build (export/quantise, untimed, cached), then load + encode timed."""
    import torch

    from workbench.encoders.text import ONNX_VARIANTS, build_onnx

    if threads:
        torch.set_num_threads(threads)
    factories = {v: text_encoder_factory(v) for v in variants}
    for v in variants:  # one-off export into the model cache: not part of steady-state speed
        if v in ONNX_VARIANTS:
            started = time.perf_counter()
            build_onnx(v)
            progress(f"{v}: model file ready ({time.perf_counter() - started:.1f} s, cached)")
    rows: dict[str, dict[str, Any]] = {}
    vectors: dict[str, np.ndarray] = {}
    for v in ["fp32", *[x for x in variants if x != "fp32"]]:
        started = time.perf_counter()
        encoder = (factories.get(v) or text_encoder_factory(v))()
        loaded = time.perf_counter()
        vectors[v] = encoder.encode(texts)
        done = time.perf_counter()
        rows[v] = {
            "version": encoder.version,
            "load_s": round(loaded - started, 3),
            "encode_s": round(done - loaded, 3),
            "texts_per_s": round(len(texts) / (done - started), 1),
            "texts_per_s_encode_only": round(len(texts) / (done - loaded), 1),
        }
        progress(f"{v}: {rows[v]['texts_per_s']} texts/s end to end")
        del encoder
    for v, vec in vectors.items():
        cos = (vec * vectors["fp32"]).sum(1)
        rows[v]["mean_cos_to_fp32"] = round(float(cos.mean()), 4)
        rows[v]["min_cos_to_fp32"] = round(float(cos.min()), 4)
    return {"texts": len(texts), "variants": rows}


def run_workbench_embed(texts: list[str], *, progress: Progress = _quiet) -> dict[str, Any]:
    """The same texts through `workbench embed` on a fresh SQLite home: the project's default
    text encoder loaded from the model cache, vectors written to segments and the database,
    fused vectors and the FAISS index built. Ingest is not timed; everything after it is."""
    from workbench.config import Settings
    from workbench.db.database import open_database
    from workbench.encoders.text import build_onnx
    from workbench.services.audit import Actor
    from workbench.services.ingest.write import ingest_path
    from workbench.services.vectors.embed import embed_project

    build_onnx()  # the one-off export of the default variant stays out of the timing
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        manifest = home / "texts.jsonl"
        with manifest.open("w") as fh:
            for i, text in enumerate(texts):
                fh.write(json.dumps({"external_id": f"t{i}", "text": text or "."}) + "\n")
        db = open_database(Settings(home=home / "home"))
        try:
            actor = Actor.system()
            ingest_path(db.sessions, db.settings, manifest, "bench", actor)
            started = time.perf_counter()
            report = embed_project(db, "bench", actor)
            elapsed = time.perf_counter() - started
        finally:
            db.engine.dispose()
    text_space = report.spaces.get("text")
    result = {
        "command": "workbench embed --project bench (in-process, SQLite)",
        "texts": len(texts),
        "encoder_version": text_space.version if text_space else None,
        "seconds": round(elapsed, 3),
        "texts_per_s": round(len(texts) / elapsed, 1),
        "embedded": report.as_dict()["embedded"],
        "failed": report.failed,
    }
    progress(f"workbench embed: {result['texts_per_s']} texts/s end to end ({elapsed:.1f} s)")
    return result


def embed_text_benchmark(
    data: Path,
    text_column: str,
    *,
    limit: int,
    variants: list[str],
    threads: int | None = None,
    through_embed: bool = True,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """`bench embed-text`: every variant on the first `limit` texts of the CSV, and (unless
    `through_embed` is off) the same texts through `workbench embed`."""
    for v in variants:
        text_encoder_factory(v)  # refuse a typo before minutes of work
    texts = read_texts(data, text_column, limit)
    result = run_text_benchmark(texts, variants, threads=threads, progress=progress)
    if through_embed:
        result["workbench_embed"] = run_workbench_embed(texts, progress=progress)
    return result | {"data": str(data), "column": text_column}


def make_benchmark_media(
    folder: Path, count: int, seconds: float
) -> tuple[list[Path], list[Path], list[Path]]:
    """`count` 640x480 JPEGs, MP3 tones and H.264 MP4s with sound (a panning picture), each
    clip `seconds` long."""
    images = [make_photo(folder / f"img{i}.jpg", seed=i) for i in range(count)]
    audio = [
        make_audio(folder / f"clip{i}.mp3", "mp3", seconds, 200.0 + 50 * i, tremolo_hz=3.0)
        for i in range(count)
    ]
    video = [
        make_video(folder / f"vid{i}.mp4", "mp4", seconds, fps=25, size=(320, 240),
                   with_audio=True, seed=i, motion="pan")
        for i in range(count)
    ]  # fmt: skip
    return images, audio, video


def run_media_benchmark(
    count: int, seconds: float, *, progress: Progress = _quiet
) -> dict[str, Any]:
    """`bench embed-media`: the offline image, audio and video defaults on generated media, and
    speech-to-text's decoding speed."""
    from workbench.encoders.audio import transcribe
    from workbench.encoders.registry import encoder_for_modality
    from workbench.schemas import EncoderSettings

    settings = EncoderSettings()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        images, audio, video = make_benchmark_media(Path(tmp), count, seconds)
        for modality, inputs, unit in (
            ("image", images, "images"),
            ("audio", audio, "clips"),
            ("video", video, "videos"),
        ):
            started = time.perf_counter()
            encoder = encoder_for_modality(modality, settings)
            loaded = time.perf_counter()
            encoder.encode(inputs)
            done = time.perf_counter()
            results[modality] = {
                "encoder": encoder.id,
                "version": encoder.version,
                "items": len(inputs),
                "load_s": round(loaded - started, 3),
                f"{unit}_per_s": round(len(inputs) / (done - loaded), 2),
            }
            if modality != "image":
                results[modality]["media_seconds_per_s"] = round(
                    len(inputs) * seconds / (done - loaded), 1
                )
            progress(f"{modality}: {results[modality][f'{unit}_per_s']} {unit}/s")
        t = transcribe(audio[0])
        results["speech_to_text"] = {
            "engine": "pocketsphinx en-us",
            "audio_s": round(t.audio_seconds, 2),
            "elapsed_s": round(t.elapsed_seconds, 3),
            "realtime_factor": round(t.elapsed_seconds / max(t.audio_seconds, 1e-9), 3),
            "note": "tone, not speech: decoding speed only",
        }
    return {
        "generated": {"images": "640x480 JPEG", "audio": "MP3 mono", "video": "H.264 MP4 + AAC"},
        "seconds_per_clip": seconds,
        "modalities": results,
    }
