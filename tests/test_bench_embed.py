"""`workbench bench embed-text` and `embed-media` at toy size: the result's shape, the media they
make, and the refusals that come before minutes of work (never the timings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image

from workbench.bench.embed import make_benchmark_media


@pytest.fixture
def out_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("WORKBENCH_BENCHMARKS_DIR", str(tmp_path / "benchmarks"))
    return tmp_path / "benchmarks"


def test_benchmark_media_are_what_the_result_says_it_times(tmp_path: Path) -> None:
    images, audio, video = make_benchmark_media(tmp_path, 2, 1.0)
    assert [p.suffix for p in images + audio + video] == [".jpg"] * 2 + [".mp3"] * 2 + [".mp4"] * 2
    with Image.open(images[0]) as img:
        assert (img.format, img.size) == ("JPEG", (640, 480))
    assert images[0].read_bytes() != images[1].read_bytes()
    with av.open(str(audio[0])) as clip:
        assert clip.format.name == "mp3" and len(clip.streams.audio) == 1
    with av.open(str(video[0])) as film:
        assert film.streams.video[0].codec_context.name == "h264"
        assert film.streams.audio[0].codec_context.name == "aac"
        assert (film.streams.video[0].width, film.streams.video[0].height) == (320, 240)


@pytest.mark.slow
def test_bench_embed_media_times_every_modality(cli: Any, out_dir: Path) -> None:
    out = cli.json("bench", "embed-media", "--count", "1", "--seconds", "1")
    assert set(out["modalities"]) == {"image", "audio", "video", "speech_to_text"}
    assert out["modalities"]["image"]["items"] == 1 and out["modalities"]["image"]["images_per_s"]
    assert out["modalities"]["video"]["media_seconds_per_s"] > 0
    assert (out_dir / "embed-media-latest.json").exists()


def test_bench_embed_text_refuses_an_unknown_variant_before_reading(
    cli: Any, tmp_path: Path, out_dir: Path
) -> None:
    out = cli.json(
        "bench", "embed-text", "--data", str(tmp_path / "absent.csv"), "--variants", "fp32,fp33",
        expect=1,
    )  # fmt: skip
    assert "unknown text variant 'fp33'" in out["error"]
    assert not out_dir.exists()


@pytest.mark.slow
def test_bench_embed_text_compares_each_variant_to_fp32(
    cli: Any, tmp_path: Path, out_dir: Path
) -> None:
    data = tmp_path / "texts.csv"
    data.write_text("tweet\nhello there\nsee you at the show\ngood night\n")
    out = cli.json(
        "bench", "embed-text", "--data", str(data), "--variants", "fp32,torch-int8",
        "--no-through-embed",
    )  # fmt: skip
    assert out["texts"] == 3 and set(out["variants"]) == {"fp32", "torch-int8"}
    assert out["variants"]["fp32"]["min_cos_to_fp32"] == pytest.approx(1.0, abs=1e-4)
    assert 0.5 < out["variants"]["torch-int8"]["mean_cos_to_fp32"] <= 1.0001
    assert "workbench_embed" not in out
    assert (out_dir / "embed-text-latest.json").exists()
