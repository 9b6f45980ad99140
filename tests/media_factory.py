"""Tiny, valid media of every supported type, and ways to break them, made inside a test's folder.

Images come from Pillow, WAV from numpy and the standard `wave` module, and everything else from
the FFmpeg that PyAV bundles (FLAC, MP3 via LAME, Ogg Opus, H.264 MP4, VP9 WebM).
"""

from __future__ import annotations

import io
import struct
import wave
import zipfile
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

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


def _first_encoder(*names: str) -> str:
    """The first of `names` that this FFmpeg build can encode with (builds differ)."""
    for name in names:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:
            continue
    raise RuntimeError(f"none of the encoders {names} is in PyAV's FFmpeg")


def make_image(
    path: Path, kind: str | None = None, size: tuple[int, int] = (32, 24), seed: int = 0
):
    """A small noisy RGB image (noise, so two seeds give two different files)."""
    kind = kind or path.suffix.lstrip(".").lower()
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, _PIL_FORMAT[kind])
    return path


def _tone(seconds: float, freq: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_wav(path: Path, seconds: float = 1.0, freq: float = 440.0) -> Path:
    samples = (_tone(seconds, freq) * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(samples.tobytes())
    return path


def make_audio(path: Path, kind: str | None = None, seconds: float = 1.0, freq: float = 440.0):
    """WAV, FLAC, MP3 or Ogg Opus mono audio of a sine tone."""
    kind = kind or path.suffix.lstrip(".").lower()
    if kind == "wav":
        return make_wav(path, seconds, freq)
    fmt, codec, sample_fmt = _AUDIO_CODEC[kind]
    if kind == "mp3":
        codec = _first_encoder("libmp3lame", "mp3")
    elif kind == "ogg":
        codec = _first_encoder("libopus", "opus", "libvorbis")
    rate = {"flac": SAMPLE_RATE, "mp3": 22_050}.get(kind, 48_000)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        tone = _tone(seconds, freq, rate)
        chunk = 1024
        for start in range(0, len(tone), chunk):
            part = tone[start : start + chunk]
            if sample_fmt == "s16":
                frame = av.AudioFrame.from_ndarray(
                    (part * 32767).astype(np.int16)[None, :], format="s16", layout="mono"
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


def make_video(
    path: Path,
    kind: str | None = None,
    seconds: float = 1.0,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    with_audio: bool = False,
    seed: int = 0,
) -> Path:
    """H.264 MP4 or VP9 WebM of moving noise, optionally with an audio track."""
    kind = kind or path.suffix.lstrip(".").lower()
    fmt, vcodec, acodec = _VIDEO_CODEC[kind]
    vcodec = (
        _first_encoder("libx264", "h264", "mpeg4")
        if kind == "mp4"
        else _first_encoder("libvpx-vp9", "libvpx", "vp9", "vp8")
    )
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as out:
        vs = out.add_stream(vcodec, rate=fps)
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        astream = None
        if with_audio:
            astream = out.add_stream(acodec, rate=48_000)
            astream.layout = "mono"
        n_frames = int(seconds * fps)
        for i in range(n_frames):
            img = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
        if astream is not None:
            rate = 48_000
            tone = _tone(seconds, 330.0, rate)
            size_a = astream.codec_context.frame_size or 960
            for start in range(0, len(tone) - size_a + 1, size_a):
                frame = av.AudioFrame.from_ndarray(
                    tone[None, start : start + size_a], format="fltp", layout="mono"
                )
                frame.sample_rate = rate
                frame.pts = start
                frame.time_base = Fraction(1, rate)
                for packet in astream.encode(frame):
                    out.mux(packet)
            for packet in astream.encode(None):
                out.mux(packet)
    return path


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


# --- corrupters ------------------------------------------------------------------------------


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
