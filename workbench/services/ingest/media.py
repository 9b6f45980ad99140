"""Identify a media file from its bytes and prove it decodes, before anything is stored.

The type comes from the file's magic bytes (`puremagic`), never its name. Images are then checked
with Pillow (declared size against the pixel limit before any pixel is decoded, then `verify()`
and `load()`), audio and video with PyAV (streams, duration, demux to the end, decode).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import puremagic
from PIL import Image, UnidentifiedImageError

from workbench.config import IngestLimits
from workbench.db.models import Modality
from workbench.errors import Problem, WorkbenchError

# Magic bytes sit at the start of every supported format (an MP3's ID3 tag announces itself in
# its first bytes too); 8 KiB leaves puremagic room for its longer signatures.
_HEAD_BYTES = 8192
# Decode at most this many packets of a long file; files up to `max_full_decode_seconds` are
# decoded completely (see IngestLimits).
_HEAD_DECODE_PACKETS = 64


@dataclass(frozen=True)
class MediaType:
    """One supported format: canonical MIME type and extension, and the decoder's name for it."""

    label: str
    mime_type: str
    extension: str
    modality: Modality
    pillow_format: str | None = None  # Pillow's format name (images)
    ffmpeg_format: str | None = None  # FFmpeg demuxer (audio, video)


PNG = MediaType("PNG", "image/png", "png", Modality.image, pillow_format="PNG")
JPEG = MediaType("JPEG", "image/jpeg", "jpg", Modality.image, pillow_format="JPEG")
WEBP = MediaType("WebP", "image/webp", "webp", Modality.image, pillow_format="WEBP")
WAV = MediaType("WAV", "audio/wav", "wav", Modality.audio, ffmpeg_format="wav")
FLAC = MediaType("FLAC", "audio/flac", "flac", Modality.audio, ffmpeg_format="flac")
MP3 = MediaType("MP3", "audio/mpeg", "mp3", Modality.audio, ffmpeg_format="mp3")
OGG = MediaType("Ogg", "audio/ogg", "ogg", Modality.audio, ffmpeg_format="ogg")
MP4 = MediaType("MP4", "video/mp4", "mp4", Modality.video, ffmpeg_format="mp4")
WEBM = MediaType("WebM", "video/webm", "webm", Modality.video, ffmpeg_format="webm")
SUPPORTED: tuple[MediaType, ...] = (PNG, JPEG, WEBP, WAV, FLAC, MP3, OGG, MP4, WEBM)
SUPPORTED_HELP = ", ".join(t.label for t in SUPPORTED)

# puremagic names a match by extension; these are the ones that mean a supported format.
_BY_MAGIC_EXTENSION: dict[str, MediaType] = {
    ".png": PNG,
    ".jpg": JPEG,
    ".jpeg": JPEG,
    ".jpe": JPEG,
    ".jfif": JPEG,
    ".webp": WEBP,
    ".wav": WAV,
    ".flac": FLAC,
    ".mp3": MP3,
    ".ogg": OGG,
    ".oga": OGG,
    ".opus": OGG,
    ".mp4": MP4,
    ".webm": WEBM,
}

_KIND_NOUN = {
    Modality.image: "an image",
    Modality.audio: "audio",
    Modality.video: "a video",
    Modality.text: "text",
}


@dataclass(frozen=True)
class MediaInfo:
    """What ingest records about one checked media file."""

    media_type: MediaType
    sha256: str
    size_bytes: int
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = None

    @property
    def modality(self) -> Modality:
        return self.media_type.modality

    @property
    def mime_type(self) -> str:
        return self.media_type.mime_type

    @property
    def extension(self) -> str:
        return self.media_type.extension


class InvalidMedia(WorkbenchError):
    """A media file that must not be ingested; `problem` says why (the caller adds line/field)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}", [Problem(reason=reason, file=str(path))])
        self.reason = reason


@dataclass(frozen=True)
class Sniffed:
    """The result of looking at a file's first bytes: a supported type, or a description."""

    media_type: MediaType | None
    description: str  # e.g. "image/gif", "a ZIP archive", "unrecognised bytes"


def _looks_like_mp3_frame(head: bytes) -> bool:
    # An MP3 without an ID3 tag starts with an MPEG audio frame header: 11 sync bits, then
    # version and layer bits (layer III = 01), a bitrate index that is not 'bad' (1111) and a
    # sample-rate index that is not reserved (11). puremagic has no rule for this case.
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version = (head[1] >> 3) & 0x3
    layer = (head[1] >> 1) & 0x3
    bitrate = head[2] >> 4
    rate = (head[2] >> 2) & 0x3
    return version != 0b01 and layer == 0b01 and bitrate not in (0, 0xF) and rate != 0b11


def sniff(head: bytes) -> Sniffed:
    """Name the format of a file from its first bytes (`head`), never from its name."""
    if not head:
        return Sniffed(None, "an empty file")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        # puremagic names ZIPs by the Office formats built on them; a plain name helps more.
        return Sniffed(None, "a ZIP archive (application/zip)")
    try:
        matches = puremagic.magic_string(head)
    except puremagic.PureError:
        matches = []
    except Exception:  # a detector must never take the ingest down; treat as unrecognised
        matches = []
    if matches:
        best = max(m.confidence for m in matches)
        for m in matches:
            if m.confidence < best:
                continue
            found = _BY_MAGIC_EXTENSION.get(m.extension.lower())
            if found is WEBM and b"webm" not in head[:128]:
                continue  # Matroska shares WebM's header; only the WebM profile is supported
            if found is not None:
                return Sniffed(found, found.mime_type)
    if _looks_like_mp3_frame(head):
        return Sniffed(MP3, MP3.mime_type)
    if matches:
        top = max(matches, key=lambda m: m.confidence)
        what = top.mime_type or top.name or top.extension
        return Sniffed(None, f"{what} ({top.extension})" if top.extension else what)
    return Sniffed(None, "unrecognised bytes")


def sniff_file(path: Path) -> Sniffed:
    with path.open("rb") as fh:
        return sniff(fh.read(_HEAD_BYTES))


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def probe_media(path: Path, limits: IngestLimits, expect: Modality | None = None) -> MediaInfo:
    """Check one media file completely enough to trust it, or raise InvalidMedia saying why.

    `expect` is the kind the manifest declared (the `image`, `audio` or `video` field); bytes of
    another kind are refused even when they are a valid file of that other kind.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise InvalidMedia(path, f"cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidMedia(path, "not a regular file")
    if st.st_size == 0:
        raise InvalidMedia(path, "empty file (0 bytes)")
    if st.st_size > limits.max_file_bytes:
        raise InvalidMedia(
            path,
            f"file is {st.st_size} bytes, over the limit of {limits.max_file_bytes} "
            "(WORKBENCH_INGEST_MAX_FILE_BYTES)",
        )
    if not os.access(path, os.R_OK):
        raise InvalidMedia(path, "cannot be read (permission denied)")
    sniffed = sniff_file(path)
    media_type = sniffed.media_type
    if media_type is None:
        raise InvalidMedia(
            path, f"unsupported type: {sniffed.description} (supported: {SUPPORTED_HELP})"
        )
    if expect is not None and media_type.modality != expect:
        raise InvalidMedia(
            path,
            f"not {_KIND_NOUN[expect]}: the bytes are {_KIND_NOUN[media_type.modality]} "
            f"({media_type.label}, {media_type.mime_type})",
        )
    digest = _sha256(path)
    if media_type.modality == Modality.image:
        width, height = _check_image(path, media_type, limits)
        return MediaInfo(media_type, digest, st.st_size, width=width, height=height)
    if media_type is WAV:
        _check_riff_length(path, st.st_size)
    width_h, duration = _check_av(path, media_type, limits)
    return MediaInfo(
        media_type,
        digest,
        st.st_size,
        width=width_h[0] if width_h else None,
        height=width_h[1] if width_h else None,
        duration_seconds=duration,
    )


def _check_image(path: Path, media_type: MediaType, limits: IngestLimits) -> tuple[int, int]:
    assert media_type.pillow_format is not None
    formats = [media_type.pillow_format]
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own pixel ceiling; the configured limit below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Image.open reads only the header: the size is known before any pixel is decoded.
            with Image.open(path, formats=formats) as img:
                width, height = img.size
                if width * height > limits.max_image_pixels:
                    raise InvalidMedia(path, _bomb_reason(width, height, limits))
                img.verify()  # structure and checksums (PNG CRCs), without decoding
            with Image.open(path, formats=formats) as img:
                img.load()  # a full decode catches truncated JPEG scans that verify() misses
    except InvalidMedia:
        raise
    except Image.DecompressionBombError as exc:
        # Pillow's own ceiling (2 x Image.MAX_IMAGE_PIXELS) stops it inside open().
        raise InvalidMedia(
            path, f"image declares too many pixels (decompression bomb?): {exc}"
        ) from None
    except UnidentifiedImageError:
        raise InvalidMedia(
            path, f"corrupt or truncated {media_type.label}: Pillow cannot read its header"
        ) from None
    except Exception as exc:
        # Decoders raise many types (OSError, SyntaxError, ValueError, struct.error) on hostile
        # bytes; each one means the same to ingest: this file is broken.
        raise InvalidMedia(
            path, f"corrupt or truncated {media_type.label}: {_exc_text(exc)}"
        ) from None
    return width, height


def _bomb_reason(width: int, height: int, limits: IngestLimits) -> str:
    return (
        f"image declares {width}x{height} = {width * height} pixels, over the limit of "
        f"{limits.max_image_pixels} (a decompression bomb?; WORKBENCH_INGEST_MAX_IMAGE_PIXELS)"
    )


def _exc_text(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:300]


def _check_riff_length(path: Path, size: int) -> None:
    # FFmpeg quietly clamps a WAV's duration to the bytes present, so a cut-off WAV would pass
    # the demux check; the RIFF header states the length the writer intended.
    with path.open("rb") as fh:
        header = fh.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        raise InvalidMedia(path, "corrupt WAV: no RIFF/WAVE header")
    declared = int.from_bytes(header[4:8], "little") + 8
    # 0 and 0xFFFFFFFF mean "length unknown" (written by streaming recorders).
    if declared not in (8, 0xFFFFFFFF + 8) and declared > size:
        raise InvalidMedia(
            path,
            f"truncated WAV: its header declares {declared} bytes but the file has {size}",
        )


def _check_av(
    path: Path, media_type: MediaType, limits: IngestLimits
) -> tuple[tuple[int, int] | None, float]:
    """Open with the sniffed demuxer, find the stream, demux to the end, decode; return size+s."""
    # Deferred: PyAV loads the FFmpeg libraries (~0.25 s), which only audio and video need.
    import av

    want = media_type.modality.value
    try:
        container = av.open(str(path), format=media_type.ffmpeg_format)
    except EOFError:
        raise InvalidMedia(
            path, f"truncated {media_type.label}: the file ends before its headers do"
        ) from None
    except Exception as exc:
        raise InvalidMedia(
            path,
            f"corrupt or truncated {media_type.label}: FFmpeg cannot open it ({_av_text(exc)})",
        ) from None
    try:
        streams: Sequence[Any] = (
            container.streams.video if want == "video" else container.streams.audio
        )
        if not streams:
            found = ", ".join(s.type for s in container.streams) or "none"
            raise InvalidMedia(
                path, f"no {want} stream in this {media_type.label} (streams found: {found})"
            )
        stream = streams[0]
        size: tuple[int, int] | None = None
        if want == "video":
            w, h = stream.codec_context.width, stream.codec_context.height
            if not w or not h:
                raise InvalidMedia(path, f"corrupt {media_type.label}: the video has no frame size")
            if w * h > limits.max_image_pixels:
                raise InvalidMedia(path, _bomb_reason(w, h, limits))
            size = (w, h)
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > limits.max_media_seconds:
            raise InvalidMedia(path, _too_long(want, declared, limits))
        full = declared is not None and declared <= limits.max_full_decode_seconds
        present, frames = _demux_and_decode(path, media_type, container, stream, full)
        if frames == 0:
            raise InvalidMedia(path, f"corrupt {media_type.label}: no {want} frame decodes")
        if declared is not None and declared - present > max(0.2, 0.1 * declared):
            raise InvalidMedia(
                path,
                f"truncated {media_type.label}: it declares {declared:.2f} s but only "
                f"{present:.2f} s of {want} is in the file",
            )
        duration = declared if declared is not None else present
        # A header may understate the length; what was demuxed counts too.
        if max(duration, present) > limits.max_media_seconds:
            raise InvalidMedia(path, _too_long(want, max(duration, present), limits))
        return size, round(duration, 6)
    except InvalidMedia:
        raise
    except Exception as exc:
        raise InvalidMedia(
            path, f"corrupt or truncated {media_type.label}: {_av_text(exc)}"
        ) from None
    finally:
        container.close()


def _too_long(want: str, seconds: float, limits: IngestLimits) -> str:
    return (
        f"{want} lasts {seconds:.1f} s, over the limit of {limits.max_media_seconds:g} s "
        "(WORKBENCH_INGEST_MAX_MEDIA_SECONDS)"
    )


def _declared_seconds(container: object, stream: object) -> float | None:
    # The stream's own duration first: the container's is the longest stream's, and a video
    # track may legitimately end before its audio track.
    sd, tb = getattr(stream, "duration", None), getattr(stream, "time_base", None)
    if sd and tb:
        return float(sd * tb)
    duration = getattr(container, "duration", None)
    if duration:
        return float(duration) / 1_000_000  # AV_TIME_BASE
    return None


def _demux_and_decode(
    path: Path, media_type: MediaType, container: object, stream: object, full: bool
) -> tuple[float, int]:
    """Read every packet (cheap: no decoding) to find where the media really ends; decode all
    of a short file and the first packets of a long one. Returns (seconds present, frames)."""
    end = 0.0
    frames = 0
    decoded_packets = 0
    for packet in container.demux(stream):  # type: ignore[attr-defined]
        if packet.size == 0:  # the flush packet at end of stream
            continue
        if packet.pts is not None and packet.time_base is not None:
            end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
        if full or decoded_packets < _HEAD_DECODE_PACKETS:
            decoded_packets += 1
            try:
                frames += len(packet.decode())
            except Exception as exc:
                raise InvalidMedia(
                    path,
                    f"corrupt {media_type.label}: decoding fails at {_at(packet)}({_av_text(exc)})",
                ) from None
    if frames == 0 and decoded_packets:
        # Some decoders hold frames back until flushed; a failing flush changes nothing.
        with contextlib.suppress(Exception):
            frames += len(stream.codec_context.decode(None))  # type: ignore[attr-defined]
    return end, frames


def _at(packet: object) -> str:
    pts, tb = getattr(packet, "pts", None), getattr(packet, "time_base", None)
    return f"{float(pts * tb):.2f} s " if pts is not None and tb is not None else ""


def _av_text(exc: BaseException) -> str:
    # PyAV's messages end with "[Errno N] ...: '<path>'"; the reason is the useful part.
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).strip()[:300]
