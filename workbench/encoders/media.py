"""Decode media for the encoders: images to RGB PIL, audio to 16 kHz mono float32, video frames.

Every decoding failure (missing, empty, truncated, not media at all) becomes a `MediaError`
naming the file and the decoder's reason, so a bad asset fails its item, never the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import Problem, WorkbenchError

# Heavy libraries (PIL, PyAV) are imported inside the functions that use them, so the
# CLI and the offline default encoders start without loading them.

SAMPLE_RATE = 16_000  # what speech and audio models (wav2vec2, Whisper, pocketsphinx) expect
# PIL's own guard is 89M pixels; ours follows the ingest limit so both agree on what is a bomb.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000

ImageInput = Any  # a path (str | Path) or a PIL.Image.Image
AudioInput = Any  # a path (str | Path) or float32 mono samples at SAMPLE_RATE


class MediaError(WorkbenchError):
    """A media file that cannot be decoded; `problems[0].file` names it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(
            f"cannot decode {path}: {reason}", [Problem(reason=reason, file=str(path))]
        )
        self.path = str(path)
        self.reason = reason


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise MediaError(path, "no such file")
    if path.stat().st_size == 0:
        raise MediaError(path, "the file is empty")


def load_image(
    source: ImageInput,
    *,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> Any:
    """An RGB PIL image, EXIF orientation applied.

    `draft_size` lets JPEG decode at a reduced scale (1/2, 1/4, 1/8) when the encoder only needs
    a thumbnail: the main cost on large photos.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(source, Image.Image):
        return source.convert("RGB")
    path = Path(source)
    _check_file(path)
    try:
        img = Image.open(path)
        width, height = img.size
        if width * height > max_pixels:
            raise MediaError(
                path, f"image declares {width}x{height} pixels, more than the limit {max_pixels}"
            )
        if draft_size is not None and img.format == "JPEG":
            img.draft("RGB", draft_size)
        img.load()
        return ImageOps.exif_transpose(img).convert("RGB")
    except MediaError:
        raise
    except UnidentifiedImageError:
        raise MediaError(path, "not an image format Pillow can read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise MediaError(path, f"corrupt or truncated image ({exc})") from None


def _open_container(path: Path) -> Any:
    import av

    _check_file(path)
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(path, f"not a media file FFmpeg can open ({exc})") from None


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float | None
    has_audio: bool
    has_video: bool


def probe(path: str | Path) -> MediaInfo:
    """Duration and which streams a file has (container metadata only, no decoding)."""
    path = Path(path)
    with _open_container(path) as container:
        duration = container.duration / 1_000_000 if container.duration else None
        return MediaInfo(
            duration_s=duration,
            has_audio=bool(container.streams.audio),
            has_video=bool(container.streams.video),
        )


def iter_audio_chunks(
    source: AudioInput,
    *,
    sample_rate: int = SAMPLE_RATE,
    chunk_seconds: float = 30.0,
    max_seconds: float | None = None,
) -> Iterator[np.ndarray]:
    """Mono float32 samples at `sample_rate`, in chunks, from any file FFmpeg decodes.

    Streaming keeps memory flat on hour-long podcasts. The audio track of a video works too.
    """
    if not isinstance(source, str | Path):
        samples = np.asarray(source, dtype=np.float32).reshape(-1)
        if max_seconds is not None:
            samples = samples[: int(max_seconds * sample_rate)]
        step = max(1, int(chunk_seconds * sample_rate))
        for start in range(0, len(samples), step):
            yield samples[start : start + step]
        return
    import av

    path = Path(source)
    chunk = max(1, int(chunk_seconds * sample_rate))
    limit = None if max_seconds is None else int(max_seconds * sample_rate)
    container = _open_container(path)
    try:
        if not container.streams.audio:
            raise MediaError(path, "the file has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        pending: list[np.ndarray] = []
        pending_n = 0
        emitted = 0
        decoded_any = False

        def frames() -> Iterator[Any]:
            for frame in container.decode(stream):
                yield from resampler.resample(frame)
            yield from resampler.resample(None)  # flush the resampler's buffer

        for frame in frames():
            decoded_any = True
            data = frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            pending.append(data)
            pending_n += len(data)
            while pending_n >= chunk:
                buf = np.concatenate(pending)
                out, rest = buf[:chunk], buf[chunk:]
                if limit is not None and emitted + len(out) >= limit:
                    yield out[: limit - emitted]
                    return
                yield out
                emitted += len(out)
                pending, pending_n = [rest], len(rest)
        if not decoded_any:
            raise MediaError(path, "the audio stream holds no decodable samples")
        if pending_n:
            buf = np.concatenate(pending)
            if limit is not None:
                buf = buf[: max(0, limit - emitted)]
            if len(buf):
                yield buf
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(path, f"corrupt or truncated audio ({exc})") from None
    finally:
        container.close()


def load_audio(
    source: AudioInput, *, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None
) -> np.ndarray:
    """The whole (or the first `max_seconds` of the) audio as mono float32 at `sample_rate`."""
    parts = list(iter_audio_chunks(source, sample_rate=sample_rate, max_seconds=max_seconds))
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def sample_times(duration_s: float | None, *, fps: float, max_frames: int) -> list[float]:
    """Timestamps to sample: `fps` per second from the start, spread evenly over the whole
    video when that would exceed `max_frames` (so a long video is summarised, not its intro)."""
    if not duration_s or duration_s <= 0:
        return [0.0]
    n = int(np.floor(duration_s * fps)) + 1
    if n <= max_frames:
        return [i / fps for i in range(n) if i / fps < duration_s] or [0.0]
    return [float(t) for t in (np.arange(max_frames) + 0.5) * duration_s / max_frames]


def iter_video_frames(
    path: str | Path, *, fps: float = 1.0, max_frames: int = 16, seek_after_s: float = 120.0
) -> list[Any]:
    """RGB PIL frames at `fps` (capped at `max_frames`, then spread evenly over the video).

    Short videos are decoded straight through; longer ones seek to each sample time, because
    decoding an hour of video to keep 16 frames would dominate the cost.
    """
    import av

    path = Path(path)
    container = _open_container(path)
    try:
        if not container.streams.video:
            raise MediaError(path, "the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        times = sample_times(duration, fps=fps, max_frames=max_frames)
        frames: list[Any] = []
        if duration is not None and duration > seek_after_s:
            base = stream.time_base or Fraction(1, 1_000_000)
            for t in times:
                container.seek(int(t / base), stream=stream, backward=True, any_frame=False)
                for frame in container.decode(stream):
                    if frame.time is None or frame.time >= t - 1e-3:
                        frames.append(frame.to_image())
                        break
        else:
            wanted = iter(times)
            target = next(wanted, None)
            for frame in container.decode(stream):
                if target is None:
                    break
                ftime = frame.time if frame.time is not None else 0.0
                if ftime >= target - 1e-3:
                    frames.append(frame.to_image())
                    target = next(wanted, None)
                    # A frame can stand for several targets when the stream has gaps.
                    while target is not None and ftime >= target - 1e-3:
                        target = next(wanted, None)
        if not frames:
            raise MediaError(path, "no decodable video frames")
        return frames
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(path, f"corrupt or truncated video ({exc})") from None
    finally:
        container.close()
