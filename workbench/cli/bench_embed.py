"""`workbench bench embed-text` and `embed-media`: encoder throughput, end to end.

embed-text times every text variant on the same texts in the same run, model loading included,
and reports each variant's mean and minimum cosine to the fp32 torch reference, so speed is
never quoted without the quality it costs. embed-media times the offline image, audio and video
defaults on media it generates (no data set needed).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from workbench.bench.results import write_result
from workbench.cli._common import JsonFlag, emit, handled, say
from workbench.errors import WorkbenchError

TEXT_VARIANTS = (
    "fp32",
    "torch-int8",
    "onnx-fp32",
    "onnx-fp32-fused",
    "onnx-int8",
    "onnx-int8-fused",
    "onnx-int8-mixed",
)


def register(app: typer.Typer) -> None:
    app.command("embed-text")(embed_text)
    app.command("embed-media")(embed_media)


def _text_encoder_factory(variant: str, cache: Path | None) -> Callable[[], Any]:
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


def _read_texts(data: Path, column: str, limit: int) -> list[str]:
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
    texts: list[str], variants: list[str], *, threads: int | None
) -> dict[str, Any]:
    """Each variant: build (export/quantise, untimed, cached), then load + encode timed."""
    import torch

    from workbench.encoders.text import ONNX_VARIANTS, build_onnx

    if threads:
        torch.set_num_threads(threads)
    factories = {v: _text_encoder_factory(v, None) for v in variants}
    for v in variants:  # one-off export into the model cache: not part of steady-state speed
        if v in ONNX_VARIANTS:
            started = time.perf_counter()
            build_onnx(v)
            say(f"{v}: model file ready ({time.perf_counter() - started:.1f} s, cached)")
    rows: dict[str, dict[str, Any]] = {}
    vectors: dict[str, np.ndarray] = {}
    for v in ["fp32", *[x for x in variants if x != "fp32"]]:
        started = time.perf_counter()
        encoder = (factories.get(v) or _text_encoder_factory(v, None))()
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
        say(f"{v}: {rows[v]['texts_per_s']} texts/s end to end")
        del encoder
    for v, vec in vectors.items():
        cos = (vec * vectors["fp32"]).sum(1)
        rows[v]["mean_cos_to_fp32"] = round(float(cos.mean()), 4)
        rows[v]["min_cos_to_fp32"] = round(float(cos.min()), 4)
    return {"texts": len(texts), "variants": rows}


def run_workbench_embed(texts: list[str]) -> dict[str, Any]:
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
    say(f"workbench embed: {result['texts_per_s']} texts/s end to end ({elapsed:.1f} s)")
    return result


def embed_text(
    data: Annotated[Path, typer.Option(help="CSV with a text column.")] = Path(
        "../shared/data/davidson/labeled_data.csv"
    ),
    text_column: Annotated[str, typer.Option(help="Text column.")] = "tweet",
    limit: Annotated[int, typer.Option(help="Texts to embed (the first N rows).", min=1)] = 3000,
    variants: Annotated[
        str, typer.Option(help=f"Comma-separated, from: {', '.join(TEXT_VARIANTS)}.")
    ] = "fp32,onnx-int8,onnx-int8-mixed,onnx-int8-fused",
    threads: Annotated[int, typer.Option(help="torch threads (0 = library default).", min=0)] = 0,
    through_embed: Annotated[
        bool,
        typer.Option(
            "--through-embed/--no-through-embed",
            help="Also time the same texts through `workbench embed` (default encoder).",
        ),
    ] = True,
    json_mode: JsonFlag = False,
) -> None:
    """Text throughput per variant (load included) and its cosine to fp32 on the same texts."""
    with handled(json_mode):
        chosen = [v.strip() for v in variants.split(",") if v.strip()]
        for v in chosen:
            _text_encoder_factory(v, None)  # refuse a typo before minutes of work
        texts = _read_texts(data, text_column, limit)
        result = run_text_benchmark(texts, chosen, threads=threads or None)
        if through_embed:
            result["workbench_embed"] = run_workbench_embed(texts)
        result |= {"data": str(data), "column": text_column}
        path = write_result("embed-text", result)
        say(f"wrote {path}")

        def human() -> None:
            print(f"{'variant':<18}{'texts/s':>9}{'load s':>8}{'mean cos':>10}{'min cos':>9}")
            for name, row in result["variants"].items():
                print(
                    f"{name:<18}{row['texts_per_s']:>9}{row['load_s']:>8}"
                    f"{row['mean_cos_to_fp32']:>10}{row['min_cos_to_fp32']:>9}"
                )

        emit(result, json_mode, human)


def run_media_benchmark(count: int, seconds: float) -> dict[str, Any]:
    """Offline defaults on generated media: 640x480 JPEGs, MP3 clips, MP4s with sound."""
    from PIL import Image

    from workbench.encoders.registry import encoder_for_modality
    from workbench.schemas import EncoderSettings

    settings = EncoderSettings()
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        images = []
        for i in range(count):
            # Smooth gradients plus noise: compresses like a photo, unlike pure noise.
            yy, xx = np.mgrid[0:480, 0:640]
            base = np.stack([(xx * (i + 1)) % 256, yy % 256, (xx + yy) % 256], -1)
            noise = rng.integers(0, 40, size=base.shape)
            path = folder / f"img{i}.jpg"
            Image.fromarray(((base + noise) % 256).astype(np.uint8)).save(path, quality=90)
            images.append(path)
        audio, video = [], []
        for i in range(count):
            audio.append(_make_audio(folder / f"clip{i}.mp3", seconds, 200.0 + 50 * i))
            video.append(_make_video(folder / f"vid{i}.mp4", seconds, i))
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
            say(f"{modality}: {results[modality][f'{unit}_per_s']} {unit}/s")
        from workbench.encoders.audio import transcribe

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


def _make_audio(path: Path, seconds: float, freq: float) -> Path:
    import av

    rate = 22_050
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )
    with av.open(str(path), "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=rate)
        stream.layout = "mono"
        for start in range(0, len(tone), 1152):
            frame = av.AudioFrame.from_ndarray(
                tone[None, start : start + 1152], format="fltp", layout="mono"
            )
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _make_video(path: Path, seconds: float, seed: int) -> Path:
    import av

    fps, width, height, rate = 25, 320, 240, 48_000
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        aus = out.add_stream("aac", rate=rate)
        aus.layout = "mono"
        base = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 4 * i, axis=1), format="rgb24")
            frame.pts = i
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
        t = np.arange(int(seconds * rate)) / rate
        tone = (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
        size = aus.codec_context.frame_size or 1024
        for start in range(0, len(tone) - size + 1, size):
            frame = av.AudioFrame.from_ndarray(
                tone[None, start : start + size], format="fltp", layout="mono"
            )
            frame.sample_rate = rate
            frame.pts = start
            for packet in aus.encode(frame):
                out.mux(packet)
        for packet in aus.encode(None):
            out.mux(packet)
    return path


def embed_media(
    count: Annotated[int, typer.Option(help="Items per modality.", min=1)] = 20,
    seconds: Annotated[float, typer.Option(help="Length of each audio/video clip.")] = 10.0,
    json_mode: JsonFlag = False,
) -> None:
    """Throughput of the offline image, audio and video defaults on generated media."""
    with handled(json_mode):
        result = run_media_benchmark(count, seconds)
        path = write_result("embed-media", result)
        say(f"wrote {path}")
        emit(result, json_mode, lambda: print(result))
