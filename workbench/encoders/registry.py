"""The encoder registry: every encoder id, its modality, and how to build it from project settings.

Encoders are loaded once per process and settings (loading MiniLM or a CLIP takes seconds), and
reused by every later call with the same configuration.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from workbench.encoders.audio import HFAudioEncoder, LogMelStatsEncoder, SpeechTextEncoder
from workbench.encoders.base import Encoder
from workbench.encoders.image import ClipImageEncoder, ImageStatsEncoder
from workbench.encoders.text import MiniLMOnnxEncoder, MiniLMTorchEncoder
from workbench.encoders.video import VideoFramesEncoder
from workbench.errors import WorkbenchError
from workbench.schemas import EncoderSettings

MODALITIES = ("text", "image", "audio", "video")
EncoderFactory = Callable[[EncoderSettings], Encoder]


@dataclass(frozen=True)
class EncoderEntry:
    id: str
    modality: str
    factory: EncoderFactory
    description: str
    needs_weights: bool  # False: runs on a fresh machine with nothing configured


_REGISTRY: dict[str, EncoderEntry] = {}
_LOADED: dict[tuple[str, str], Encoder] = {}
_LOCK = threading.RLock()  # re-entrant: video and speech encoders build others


def register(
    encoder_id: str,
    modality: str,
    factory: EncoderFactory,
    *,
    description: str,
    needs_weights: bool = False,
) -> None:
    """Add an encoder (a plugin registers itself the same way)."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    _REGISTRY[encoder_id] = EncoderEntry(encoder_id, modality, factory, description, needs_weights)


def available(modality: str | None = None) -> list[EncoderEntry]:
    return [e for e in _REGISTRY.values() if modality is None or e.modality == modality]


def get_encoder(encoder_id: str, settings: EncoderSettings | None = None) -> Encoder:
    """The encoder registered as `encoder_id`, built from `settings` (model paths, and for video
    the image and audio encoders) and cached. A modality name ("text") means that modality's
    encoder in `settings` (defaults when None)."""
    settings = settings or EncoderSettings()
    if encoder_id in MODALITIES and encoder_id not in _REGISTRY:
        encoder_id = getattr(settings, encoder_id)
    entry = _REGISTRY.get(encoder_id)
    if entry is None:
        raise WorkbenchError(
            f"unknown encoder {encoder_id!r}; registered encoders: "
            + ", ".join(f"{e.id} ({e.modality})" for e in _REGISTRY.values())
        )
    key = (encoder_id, settings.model_dump_json())
    with _LOCK:
        encoder = _LOADED.get(key)
        if encoder is None:
            encoder = entry.factory(settings)
            _LOADED[key] = encoder
    return encoder


def encoder_for_modality(modality: str, settings: EncoderSettings) -> Encoder:
    """The encoder a project's settings choose for `modality`."""
    if modality not in MODALITIES:
        raise WorkbenchError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    encoder_id = getattr(settings, modality)
    entry = _REGISTRY.get(encoder_id)
    if entry is not None and entry.modality != modality:
        raise WorkbenchError(
            f"encoders.{modality} is {encoder_id!r}, which is a {entry.modality} encoder; "
            f"{modality} encoders: " + ", ".join(e.id for e in available(modality))
        )
    return get_encoder(encoder_id, settings)


def encoders_for(settings: EncoderSettings) -> dict[str, Encoder]:
    """All four modality encoders a project's settings choose, loaded (and cached)."""
    return {m: encoder_for_modality(m, settings) for m in MODALITIES}


def clear_cache() -> None:
    """Forget loaded encoders (tests, or after replacing a model directory in place)."""
    with _LOCK:
        _LOADED.clear()


# ---- the built-in encoders -------------------------------------------------------------------


def _minilm(settings: EncoderSettings) -> Encoder:
    return MiniLMOnnxEncoder()


def _minilm_torch(settings: EncoderSettings) -> Encoder:
    return MiniLMTorchEncoder()


def _image_stats(settings: EncoderSettings) -> Encoder:
    return ImageStatsEncoder()


def _clip(settings: EncoderSettings) -> Encoder:
    if not settings.image_model_path:
        raise WorkbenchError(
            "encoders.image is 'clip' but encoders.image_model_path is not set: point it at a "
            "local CLIP-family model directory"
        )
    return ClipImageEncoder(settings.image_model_path)


def _audio_logmel(settings: EncoderSettings) -> Encoder:
    return LogMelStatsEncoder()


def _hf_audio(settings: EncoderSettings) -> Encoder:
    if not settings.audio_model_path:
        raise WorkbenchError(
            "encoders.audio is 'hf-audio' but encoders.audio_model_path is not set: point it at "
            "a local CLAP, wav2vec2 or Whisper model directory"
        )
    return HFAudioEncoder(settings.audio_model_path)


def _speech_minilm(settings: EncoderSettings) -> Encoder:
    return SpeechTextEncoder(get_encoder(settings.text, settings))


def _video_frames(settings: EncoderSettings) -> Encoder:
    return VideoFramesEncoder(
        encoder_for_modality("image", settings), encoder_for_modality("audio", settings)
    )


register(
    "minilm-l6-v2",
    "text",
    _minilm,
    description="all-MiniLM-L6-v2 on ONNX Runtime (fused graph, int8 MatMuls), 384 dims",
)
register(
    "minilm-l6-v2-torch",
    "text",
    _minilm_torch,
    description="all-MiniLM-L6-v2 fp32 on torch: the reference the fast variant is tested against",
)
register(
    "image-stats",
    "image",
    _image_stats,
    description="offline colour (CIELAB), layout (DCT) and edge statistics; no semantics",
)
register(
    "clip",
    "image",
    _clip,
    description="local CLIP-family model dir (encoders.image_model_path); text-to-image search",
    needs_weights=True,
)
register(
    "audio-logmel",
    "audio",
    _audio_logmel,
    description="offline log-mel statistics (timbre, dynamics, modulation); no words",
)
register(
    "hf-audio",
    "audio",
    _hf_audio,
    description="local CLAP, wav2vec2 or Whisper dir (encoders.audio_model_path), mean-pooled",
    needs_weights=True,
)
register(
    "speech-minilm",
    "audio",
    _speech_minilm,
    description="offline English speech-to-text (pocketsphinx) into the text encoder",
)
register(
    "video-frames",
    "video",
    _video_frames,
    description="1 fps frames (max 16) through the image encoder, mean-pooled; audio track too",
)
