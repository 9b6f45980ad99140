"""Tiny, valid media of every supported type, and ways to break them, for tests: the project's one
generator, `workbench.bench.synthetic_media`, under the name the tests import."""

from __future__ import annotations

from workbench.bench.synthetic_media import (
    ALL_KINDS,
    AUDIO_KINDS,
    IMAGE_KINDS,
    SAMPLE_RATE,
    VIDEO_KINDS,
    corrupt_middle,
    make_audio,
    make_bomb_png,
    make_empty,
    make_image,
    make_media,
    make_video,
    make_wav,
    make_zip_named,
    truncate,
)

__all__ = [
    "ALL_KINDS",
    "AUDIO_KINDS",
    "IMAGE_KINDS",
    "SAMPLE_RATE",
    "VIDEO_KINDS",
    "corrupt_middle",
    "make_audio",
    "make_bomb_png",
    "make_empty",
    "make_image",
    "make_media",
    "make_video",
    "make_wav",
    "make_zip_named",
    "truncate",
]
