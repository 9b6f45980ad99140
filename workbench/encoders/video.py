"""Video encoder: frames sampled with PyAV through the image encoder, mean-pooled, and the audio
track through the audio encoder; one vector per video that keeps both parts apart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.encoders.base import Encoder, l2_normalise
from workbench.encoders.fusion import fuse
from workbench.encoders.media import iter_video_frames, probe

FPS = 1.0
MAX_FRAMES = 16  # beyond 16 s the frames are spread evenly over the whole video


@dataclass
class VideoVectors:
    """The two parts of a batch of videos: frames [n, image dim], audio [n, audio dim] (zero rows
    where a video has no audio track), and which videos have one."""

    frames: np.ndarray
    audio: np.ndarray
    has_audio: np.ndarray


class VideoFramesEncoder(Encoder):
    """Video = mean of the image vectors of frames sampled at 1 fps (at most 16, spread evenly
    over longer videos), plus the audio track through the audio encoder.

    `encode` returns the two parts fused by the project's fusion method (workbench.encoders
    .fusion, equal weights: [frames | audio]), so the cosine of two videos with sound is the mean
    of their frame and audio cosines, and a silent video compares by frames alone. `encode_parts`
    returns both parts, so they can be stored and searched separately. Mean pooling ignores
    order: it says what is shown, not in which sequence.
    """

    id = "video-frames"
    modality = "video"

    def __init__(
        self,
        image_encoder: Encoder,
        audio_encoder: Encoder,
        *,
        fps: float = FPS,
        max_frames: int = MAX_FRAMES,
    ) -> None:
        self.image_encoder = image_encoder
        self.audio_encoder = audio_encoder
        self.fps = fps
        self.max_frames = max_frames
        self.layout = {"frames": image_encoder.dim, "audio": audio_encoder.dim}
        self.dim = image_encoder.dim + audio_encoder.dim
        self.version = (
            f"video-frames/v1/{fps:g}fps-max{max_frames}-mean"
            f"/image={image_encoder.id}@{image_encoder.version}"
            f"/audio={audio_encoder.id}@{audio_encoder.version}"
        )

    def encode_parts(self, batch: Sequence[str | Path]) -> VideoVectors:
        n = len(batch)
        frames = np.zeros((n, self.image_encoder.dim), np.float32)
        audio = np.zeros((n, self.audio_encoder.dim), np.float32)
        has_audio = np.zeros(n, dtype=bool)
        for i, path in enumerate(batch):
            images = iter_video_frames(path, fps=self.fps, max_frames=self.max_frames)
            frames[i] = self.image_encoder.encode(images).mean(0)
            if probe(path).has_audio:
                audio[i] = self.audio_encoder.encode([path])[0]
                has_audio[i] = True
        return VideoVectors(l2_normalise(frames), audio, has_audio)

    def encode(self, batch: Sequence[str | Path]) -> np.ndarray:
        parts = self.encode_parts(batch)
        n = len(batch)
        return fuse(
            {"frames": parts.frames, "audio": parts.audio},
            {"frames": np.ones(n, dtype=bool), "audio": parts.has_audio},
            self.layout,
        )
