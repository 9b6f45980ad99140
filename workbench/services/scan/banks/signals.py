"""Signal types: how a file becomes a signal, and how a signal string is checked and compared.

One small plugin class per signal type with one registry, after python-threatexchange's
`SignalType` (threatexchange/signal_type/signal_base.py): a new hash is a new class.
"""

from __future__ import annotations

import hashlib
import io
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import av
import numpy as np
import pdqhash
from PIL import Image, UnidentifiedImageError

from workbench.db.models import SignalType
from workbench.errors import WorkbenchError

PDQ_BITS = 256
PDQ_HEX_LEN = PDQ_BITS // 4
# PDQ's reference "confident match" distance (ThreatExchange pdq/README, pytx PDQIndex
# `get_match_threshold`): at most 31 of 256 bits differ.
PDQ_MATCH_DISTANCE = 31
# Below 50 PDQ's authors call a hash unreliable (flat or tiny images); vPDQ drops such frames.
PDQ_MIN_QUALITY = 50
# vPDQ (pytx extensions/vpdq/vpdq_util.py): one frame a second, frames within distance 31 match,
# and a video matches a bank video when >= 80 % of its usable frames match one of that video's.
VPDQ_SECONDS_PER_FRAME = 1.0
VPDQ_QUERY_MATCH_PERCENT = 80.0
# A bound on work per video: 15 minutes at one frame a second.
VPDQ_MAX_FRAMES = 900

_HEX = re.compile(r"^[0-9a-f]+$")


class SignalError(WorkbenchError):
    """A file that cannot be hashed, or a signal string that is not a valid signal."""


@dataclass(frozen=True)
class Signal:
    """One hashed signal: its type, its canonical string and PDQ's quality (None if it has none)."""

    signal_type: SignalType
    value: str
    quality: int | None = None

    @property
    def key(self) -> str:
        return signal_key(self.value)


def usable(signal: Signal) -> bool:
    """Whether a hashed signal may match: PDQ hashes of quality below 50 are not (flat or tiny
    pictures all hash alike; pytx's PdqSignal drops them, PDQ's README says discard <= 49)."""
    if signal.signal_type is SignalType.pdq and signal.quality is not None:
        return signal.quality >= PDQ_MIN_QUALITY
    return True


def signal_key(value: str) -> str:
    """The indexed form of a signal: itself when short, else its SHA-256 (see HashBankContent)."""
    return value if len(value) <= 64 else hashlib.sha256(value.encode()).hexdigest()


class SignalHasher(ABC):
    """One signal type: which files it hashes, how, and what its signal strings look like."""

    signal_type: ClassVar[SignalType]
    # Sniffed MIME type prefixes this hasher reads; empty means every file.
    media_prefixes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def applies_to(cls, media_type: str) -> bool:
        return not cls.media_prefixes or media_type.startswith(cls.media_prefixes)

    @classmethod
    @abstractmethod
    def hash_bytes(cls, data: bytes) -> Signal:
        """The signal of a file's bytes; SignalError if the file cannot be decoded."""

    @classmethod
    @abstractmethod
    def parse(cls, text: str) -> Signal:
        """A signal string as written in a CSV or by another tool, checked and made canonical;
        SignalError naming what is wrong."""


class _ExactHasher(SignalHasher):
    """A cryptographic digest of the bytes: finds only the identical file."""

    digest: ClassVar[str]
    hex_len: ClassVar[int]

    @classmethod
    def hash_bytes(cls, data: bytes) -> Signal:
        return Signal(cls.signal_type, hashlib.new(cls.digest, data).hexdigest())

    @classmethod
    def parse(cls, text: str) -> Signal:
        value = text.strip().lower()
        if len(value) != cls.hex_len or not _HEX.match(value):
            raise SignalError(
                f"a {cls.signal_type.value} signal is {cls.hex_len} hex digits, got {text!r}"
            )
        return Signal(cls.signal_type, value)


class SHA256Hasher(_ExactHasher):
    signal_type = SignalType.sha256
    digest = "sha256"
    hex_len = 64


class MD5Hasher(_ExactHasher):
    # MD5 only because shared hash lists (NCMEC, industry lists) still carry it; SHA-256 beside it.
    signal_type = SignalType.md5
    digest = "md5"
    hex_len = 32


def pdq_of_pixels(pixels: np.ndarray) -> tuple[str, int]:
    """PDQ hex and quality of an RGB array, bits packed high-first as pytx's pdq_hasher writes
    them (so hashes exchange with HMA and ThreatExchange)."""
    bits, quality = pdqhash.compute(np.ascontiguousarray(pixels))
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality)


def _parse_pdq_hex(text: str) -> str:
    value = text.strip().lower()
    if len(value) != PDQ_HEX_LEN or not _HEX.match(value):
        raise SignalError(f"a pdq signal is {PDQ_HEX_LEN} hex digits, got {text[:80]!r}")
    return value


class PDQHasher(SignalHasher):
    """Meta's PDQ: a 256-bit perceptual hash that survives resizing, re-encoding and small edits."""

    signal_type = SignalType.pdq
    media_prefixes = ("image/",)

    @classmethod
    def hash_bytes(cls, data: bytes) -> Signal:
        try:
            with Image.open(io.BytesIO(data)) as image:
                # RGB for every mode: pdqhash wants three channels (pytx converts LA and I;16 too).
                pixels = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise SignalError(f"cannot decode the image for PDQ: {exc}") from exc
        value, quality = pdq_of_pixels(pixels)
        return Signal(cls.signal_type, value, quality)

    @classmethod
    def parse(cls, text: str) -> Signal:
        return Signal(cls.signal_type, _parse_pdq_hex(text))


@dataclass(frozen=True)
class VideoFrameHash:
    """One sampled frame of a video: its PDQ, quality and time (vPDQ's compact feature)."""

    pdq: str
    quality: int
    seconds: float

    def __str__(self) -> str:
        # pytx's VpdqCompactFeature writes "hex,quality,timestamp" with 3 decimals.
        return f"{self.pdq},{self.quality},{self.seconds:.3f}"


def parse_vpdq(text: str) -> list[VideoFrameHash]:
    """Frames of a vPDQ signal: "hex,quality,seconds" features separated by spaces."""
    frames = []
    for n, part in enumerate(text.split(), start=1):
        fields = part.split(",")
        if len(fields) != 3:
            raise SignalError(f"vpdq frame {n} is not 'pdq_hex,quality,seconds': {part[:80]!r}")
        try:
            quality, seconds = int(fields[1]), float(fields[2])
        except ValueError as exc:
            raise SignalError(f"vpdq frame {n}: quality or seconds is not a number") from exc
        if not 0 <= quality <= 100 or seconds < 0:
            raise SignalError(f"vpdq frame {n}: quality is 0-100 and seconds >= 0")
        frames.append(VideoFrameHash(_parse_pdq_hex(fields[0]), quality, seconds))
    if not frames:
        raise SignalError("a vpdq signal needs at least one frame")
    return frames


class VPDQHasher(SignalHasher):
    """Meta's vPDQ: one PDQ per sampled frame, compared frame set against frame set."""

    signal_type = SignalType.vpdq
    media_prefixes = ("video/",)

    @classmethod
    def hash_bytes(cls, data: bytes) -> Signal:
        frames = video_frame_hashes(data)
        if not frames:
            raise SignalError("the video has no frame to hash")
        # The signal's quality is its weakest kept frame's, so a bank lists poor videos plainly.
        return Signal(
            cls.signal_type,
            " ".join(str(f) for f in frames),
            min(f.quality for f in frames),
        )

    @classmethod
    def parse(cls, text: str) -> Signal:
        frames = parse_vpdq(text)
        return Signal(
            cls.signal_type, " ".join(str(f) for f in frames), min(f.quality for f in frames)
        )


def video_frame_hashes(
    data: bytes, seconds_per_frame: float = VPDQ_SECONDS_PER_FRAME
) -> list[VideoFrameHash]:
    """PDQ of the first decoded frame at or after every `seconds_per_frame`, as vPDQ samples."""
    frames: list[VideoFrameHash] = []
    next_at = 0.0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise SignalError("the file has no video stream")
            for frame in container.decode(video=0):
                at = float(frame.time) if frame.time is not None else next_at
                if at + 1e-6 < next_at:
                    continue
                value, quality = pdq_of_pixels(frame.to_ndarray(format="rgb24"))
                frames.append(VideoFrameHash(value, quality, at))
                next_at = at + seconds_per_frame
                if len(frames) >= VPDQ_MAX_FRAMES:
                    break
    except av.error.FFmpegError as exc:
        raise SignalError(f"cannot decode the video for vPDQ: {exc}") from exc
    return frames


HASHERS: dict[SignalType, type[SignalHasher]] = {
    h.signal_type: h for h in (PDQHasher, VPDQHasher, SHA256Hasher, MD5Hasher)
}


def hashers_for(media_type: str) -> list[type[SignalHasher]]:
    """Every signal type that reads files of this sniffed MIME type."""
    return [h for h in HASHERS.values() if h.applies_to(media_type)]


def parse_signal(signal_type: str, text: str) -> Signal:
    """A signal string of a named type, checked (SignalError naming the problem)."""
    try:
        hasher = HASHERS[SignalType(signal_type.strip().lower())]
    except ValueError:
        known = ", ".join(t.value for t in HASHERS)
        raise SignalError(f"unknown signal type {signal_type!r}; expected one of {known}") from None
    return hasher.parse(text)
