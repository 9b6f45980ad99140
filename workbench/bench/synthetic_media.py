"""Media made from code for tests, benchmarks and the sample fixtures: images, WAV tones and
speech, compressed audio, videos, and broken files of each kind, all from fixed seeds.

Images come from Pillow, WAV from numpy and the standard `wave` module, speech from espeak-ng, and
everything else from the FFmpeg that PyAV bundles (FLAC, MP3 via LAME, Ogg Opus, H.264 MP4, VP9
WebM). Nothing is downloaded, so a fresh machine can make all of it.
"""

from __future__ import annotations

import io
import struct
import subprocess
import tempfile
import wave
import zipfile
import zlib
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from av.codec.context import Flags
from PIL import Image
from scipy.signal import resample_poly

SAMPLE_RATE = 16_000
IMAGE_KINDS = ("png", "jpg", "webp")
AUDIO_KINDS = ("wav", "flac", "mp3", "ogg")
VIDEO_KINDS = ("mp4", "webm")
ALL_KINDS = IMAGE_KINDS + AUDIO_KINDS + VIDEO_KINDS

_PIL_FORMAT = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
# (container format, codec, sample format the encoder takes)
_AUDIO_CODEC = {
    "flac": ("flac", "flac", "s16"),
    "mp3": ("mp3", "libmp3lame", "fltp"),
    # This FFmpeg has no libvorbis and its native Vorbis encoder is experimental: Ogg Opus.
    "ogg": ("ogg", "libopus", "fltp"),
}
_VIDEO_CODEC = {"mp4": ("mp4", "libx264", "aac"), "webm": ("webm", "libvpx-vp9", "libopus")}


def first_encoder(*names: str) -> str | None:
    """The first of `names` that this FFmpeg build can encode with (builds differ), or None."""
    for name in names:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:
            continue
    return None


def _encoder(*names: str) -> str:
    found = first_encoder(*names)
    if found is None:
        raise RuntimeError(f"none of the encoders {names} is in PyAV's FFmpeg")
    return found


# --- images -------------------------------------------------------------------------------------


def make_image(
    path: Path, kind: str | None = None, size: tuple[int, int] = (32, 24), seed: int = 0
) -> Path:
    """A small noisy RGB image (noise, so two seeds give two different files)."""
    kind = kind or path.suffix.lstrip(".").lower()
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, _PIL_FORMAT[kind])
    return path


def make_photo(
    path: Path, size: tuple[int, int] = (640, 480), seed: int = 0, quality: int = 90
) -> Path:
    """A JPEG of smooth gradients plus noise: it compresses like a photo, unlike pure noise."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * (seed + 1)) % 256, yy % 256, (xx + yy) % 256], -1)
    noise = np.random.default_rng(seed).integers(0, 40, size=base.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(((base + noise) % 256).astype(np.uint8)).save(path, "JPEG", quality=quality)
    return path


def gradient(size: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> np.ndarray:
    """A square of `size` pixels shading from `top` to `bottom` (float RGB, 0-255)."""
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    rows = (1 - t) * np.array(top) + t * np.array(bottom)
    return np.broadcast_to(rows, (size, size, 3)).astype(np.float64)


def with_grain(pixels: np.ndarray, seed: int) -> Image.Image:
    """`pixels` with a little Gaussian grain, which gives PDQ enough texture to hash well."""
    rng = np.random.default_rng(seed)
    noisy = pixels + rng.normal(0.0, 6.0, pixels.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


# --- audio --------------------------------------------------------------------------------------


def tone(
    seconds: float,
    freq: float,
    rate: int = SAMPLE_RATE,
    *,
    amplitude: float = 0.3,
    tremolo_hz: float = 0.0,
) -> np.ndarray:
    """A float32 sine tone; `tremolo_hz` > 0 swells its loudness, so it is not one flat note."""
    t = np.arange(int(seconds * rate)) / rate
    wave_ = amplitude * np.sin(2 * np.pi * freq * t)
    if tremolo_hz:
        wave_ = wave_ * (1 + 0.5 * np.sin(2 * np.pi * tremolo_hz * t))
    return wave_.astype(np.float32)


def melody(text: str, max_seconds: float = 3.0) -> np.ndarray:
    """A short 16 kHz melody whose notes follow the letters of `text` (speech's stand-in when
    espeak-ng is missing)."""
    notes = [220.0 * 2 ** ((ord(ch) % 12) / 12) for ch in text if ch.isalpha()][:10]
    note_s = min(0.25, max_seconds / max(1, len(notes)))
    t = np.arange(int(note_s * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = np.minimum(1.0, np.minimum(t, t[::-1]) * 40)
    return np.concatenate([0.3 * envelope * np.sin(2 * np.pi * f * t) for f in notes])


def _espeak(text: str, voice: str, words_per_minute: int) -> tuple[np.ndarray, int]:
    """Mono float samples and their sample rate, as espeak-ng speaks them."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(out), text],
            check=True,
            capture_output=True,
        )
        with wave.open(str(out), "rb") as w:
            raw = w.readframes(w.getnframes())
            sr = w.getframerate()
            channels = w.getnchannels()
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples, sr


def _trim_silence(samples: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) > threshold)
    if loud.size == 0:
        return samples
    pad = int(0.05 * SAMPLE_RATE)
    return samples[max(0, loud[0] - pad) : loud[-1] + pad]


def speak(text: str, voice: str = "en-us", max_seconds: float = 3.0) -> np.ndarray:
    """16 kHz speech of at most `max_seconds`: espeak-ng is sped up until the text fits."""
    for words_per_minute in range(150, 260, 15):
        samples, sr = _espeak(text, voice, words_per_minute)
        # Polyphase resampling from espeak-ng's 22.05 kHz (scipy, exact rational ratio).
        clip = _trim_silence(resample_poly(samples, SAMPLE_RATE, sr))
        if len(clip) <= max_seconds * SAMPLE_RATE:
            return clip
    raise RuntimeError(f"espeak-ng cannot say {text!r} within {max_seconds} s")


def pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as 16-bit integers (clipped, rounded): the one conversion, so a
    tone written as WAV and as FLAC holds the same samples."""
    return (np.clip(samples, -1.0, 1.0) * 32767).round().astype("<i2")


def write_wav(samples: np.ndarray, path: Path, rate: int = SAMPLE_RATE) -> Path:
    """16-bit mono PCM WAV of float samples in [-1, 1]."""
    pcm = pcm16(samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def make_wav(path: Path, seconds: float = 1.0, freq: float = 440.0) -> Path:
    return write_wav(tone(seconds, freq), path)


def make_audio(
    path: Path,
    kind: str | None = None,
    seconds: float = 1.0,
    freq: float = 440.0,
    *,
    tremolo_hz: float = 0.0,
) -> Path:
    """WAV, FLAC, MP3 or Ogg Opus mono audio of a sine tone."""
    kind = kind or path.suffix.lstrip(".").lower()
    if kind == "wav":
        return write_wav(tone(seconds, freq, tremolo_hz=tremolo_hz), path)
    fmt, codec, sample_fmt = _AUDIO_CODEC[kind]
    if kind == "mp3":
        codec = _encoder("libmp3lame", "mp3")
    elif kind == "ogg":
        codec = _encoder("libopus", "opus", "libvorbis")
    rate = {"flac": SAMPLE_RATE, "mp3": 22_050}.get(kind, 48_000)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        assert isinstance(stream, av.AudioStream)  # narrows the type: the codec is a variable
        stream.layout = "mono"
        samples = tone(seconds, freq, rate, tremolo_hz=tremolo_hz)
        chunk = 1024
        for start in range(0, len(samples), chunk):
            part = samples[start : start + chunk]
            if sample_fmt == "s16":
                frame = av.AudioFrame.from_ndarray(
                    pcm16(part).astype(np.int16)[None, :], format="s16", layout="mono"
                )
            else:
                frame = av.AudioFrame.from_ndarray(part[None, :], format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


# --- video --------------------------------------------------------------------------------------


def make_video(
    path: Path,
    kind: str | None = None,
    seconds: float = 1.0,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    with_audio: bool = False,
    seed: int = 0,
    motion: Literal["noise", "pan"] = "noise",
) -> Path:
    """H.264 MP4 or VP9 WebM, optionally with a 330 Hz tone as its sound. `noise`: every frame
    fresh noise (hard to compress); `pan`: one noise picture sliding sideways, as a camera pan."""
    kind = kind or path.suffix.lstrip(".").lower()
    fmt, _, acodec = _VIDEO_CODEC[kind]
    vcodec = (
        _encoder("libx264", "h264", "mpeg4")
        if kind == "mp4"
        else _encoder("libvpx-vp9", "libvpx", "vp9", "vp8")
    )
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as out:
        vs = out.add_stream(vcodec, rate=fps)
        assert isinstance(vs, av.VideoStream)  # narrows the type: the codec is a variable
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        astream: av.AudioStream | None = None
        if with_audio:
            added = out.add_stream(acodec, rate=48_000)
            assert isinstance(added, av.AudioStream)
            astream = added
            astream.layout = "mono"
        picture = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        for i in range(int(seconds * fps)):
            if motion == "pan":
                img = np.roll(picture, 4 * i, axis=1)
            else:
                img = picture if i == 0 else rng.integers(0, 256, picture.shape, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
        if astream is not None:
            rate = 48_000
            sound = tone(seconds, 330.0, rate)
            size_a = astream.codec_context.frame_size or 960
            for start in range(0, len(sound) - size_a + 1, size_a):
                piece = av.AudioFrame.from_ndarray(
                    sound[None, start : start + size_a], format="fltp", layout="mono"
                )
                piece.sample_rate = rate
                piece.pts = start
                piece.time_base = Fraction(1, rate)
                for packet in astream.encode(piece):
                    out.mux(packet)
            for packet in astream.encode(None):
                out.mux(packet)
    return path


def write_mp4(
    frames: Sequence[Image.Image],
    audio: np.ndarray | None,
    path: Path,
    fps: int,
    *,
    crf: int = 32,
) -> bool:
    """Tiny H.264 MP4 of `frames` (MPEG-4 Part 2 if no H.264), with 16 kHz `audio` as an AAC
    track when this FFmpeg has AAC (cut or padded with silence to the video's length).

    Returns whether the file got an audio track. bitexact flags keep FFmpeg's version string
    and other build-specific bytes out of the file, so reruns with one FFmpeg match.
    """
    vcodec = first_encoder("libx264", "mpeg4")
    acodec = first_encoder("aac") if audio is not None else None
    if vcodec is None:
        raise RuntimeError("PyAV's FFmpeg has neither libx264 nor mpeg4 to make videos")
    width, height = frames[0].size
    with av.open(str(path), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        v = container.add_stream(vcodec, rate=fps)
        assert isinstance(v, av.VideoStream)  # narrows the type: the codec name is a variable
        v.width, v.height = width, height
        v.pix_fmt = "yuv420p"
        v.codec_context.flags |= Flags.bitexact
        if vcodec == "libx264":
            v.options = {"crf": str(crf), "preset": "medium", "threads": "1"}
        a: av.AudioStream | None = None
        if acodec is not None:
            added = container.add_stream(acodec, rate=SAMPLE_RATE)
            assert isinstance(added, av.AudioStream)
            a = added
            a.layout = "mono"
            a.bit_rate = 24_000
            a.codec_context.flags |= Flags.bitexact
        for img in frames:
            for packet in v.encode(av.VideoFrame.from_image(img)):
                container.mux(packet)
        for packet in v.encode():
            container.mux(packet)
        if a is not None and audio is not None:
            want = len(frames) * SAMPLE_RATE // fps
            track = np.zeros(want, dtype=np.float32)
            track[: min(want, len(audio))] = audio[:want]
            # AAC encodes fixed frames of 1024 samples; feed it in those.
            pts = 0
            for start in range(0, want, 1024):
                chunk = track[start : start + 1024][None, :]
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate = SAMPLE_RATE
                frame.pts = pts
                frame.time_base = Fraction(1, SAMPLE_RATE)
                pts += chunk.shape[1]
                for packet in a.encode(frame):
                    container.mux(packet)
            for packet in a.encode():
                container.mux(packet)
    return a is not None


def make_media(path: Path, seed: int = 0) -> Path:
    """A valid file of the type its suffix names: png jpg webp wav flac mp3 ogg mp4 webm."""
    kind = path.suffix.lstrip(".").lower()
    if kind in IMAGE_KINDS:
        return make_image(path, kind, seed=seed)
    if kind in AUDIO_KINDS:
        return make_audio(path, kind, freq=300.0 + 10 * seed)
    if kind in VIDEO_KINDS:
        return make_video(path, kind, seed=seed)
    raise ValueError(f"no factory for {kind!r}")


# --- broken files -------------------------------------------------------------------------------


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut the file to `keep` of its bytes, as an interrupted download would."""
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path


def make_empty(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def make_zip_named(path: Path) -> Path:
    """A ZIP archive under a media name (e.g. `photo.png`)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "not an image")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def make_bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A small PNG whose header declares a huge image (a decompression bomb's signature).

    The IDAT holds only a few compressed rows; a decoder that trusts the header allocates
    width x height pixels before it notices.
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def corrupt_middle(path: Path) -> Path:
    """Overwrite the middle third of the file with junk, keeping its header intact."""
    data = bytearray(path.read_bytes())
    n = len(data)
    data[n // 3 : 2 * n // 3] = b"\xde\xad\xbe\xef" * ((2 * n // 3 - n // 3) // 4 + 1)
    path.write_bytes(bytes(data[:n]))
    return path
