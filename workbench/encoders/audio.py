"""Audio encoders: the offline `audio-logmel` default (log-mel statistics, no weights), `hf-audio`
for a local CLAP, wav2vec2-family or Whisper directory, and `speech-minilm`, which transcribes
speech offline with pocketsphinx and embeds the transcript with the text encoder.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.encoders.base import Encoder, l2_normalise, load_hf_model_dir, model_fingerprint
from workbench.encoders.media import SAMPLE_RATE, AudioInput, iter_audio_chunks, load_audio
from workbench.errors import WorkbenchError

# Heavy libraries (torch, transformers, pocketsphinx) are imported inside the functions that use
# them, so the CLI starts without loading them.

# log-mel front end: 25 ms Hann windows every 10 ms, 64 Slaney mel bands up to 8 kHz, the usual
# speech/audio-tagging setting (VGGish, PANNs at 16 kHz).
FRAME = 400
HOP = 160
N_FFT = 512
N_MELS = 64
LOUDNESS_BINS = 16
LOG_FLOOR = 1e-10


def mel_filters() -> np.ndarray:
    from transformers.audio_utils import mel_filter_bank

    return mel_filter_bank(
        num_frequency_bins=N_FFT // 2 + 1,
        num_mel_filters=N_MELS,
        min_frequency=0.0,
        max_frequency=SAMPLE_RATE / 2,
        sampling_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    ).astype(np.float32)


def log_mel(samples: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """log10 mel power [frames, N_MELS] of uncentred frames; the same numbers as
    `transformers.audio_utils.spectrogram(..., center=False, power=2.0, log_mel="log10")`,
    vectorised (the library loops over frames in Python, too slow for an hour of podcast)."""
    if len(samples) < FRAME:
        samples = np.pad(samples, (0, FRAME - len(samples)))
    frames = np.lib.stride_tricks.sliding_window_view(samples, FRAME)[::HOP]
    window = np.hanning(FRAME + 1)[:-1].astype(np.float32)  # periodic Hann, as the library's
    spectrum = np.fft.rfft(frames * window, n=N_FFT, axis=1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    return np.log10(np.maximum(power @ filters, LOG_FLOOR))


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else v


class LogMelStatsEncoder(Encoder):
    """Offline audio statistics over a log-mel spectrogram (16 kHz mono, 64 bands, 10 ms hop).

    Blocks, each L2-normalised, concatenated with equal weight:
    - spectral shape (64): mean log-mel energy per band, centred across bands (timbre: speech,
      music, noise, a siren and a bass line differ here), independent of overall volume;
    - variability (64): log standard deviation over time per band, centred (steady hum vs
      speech vs percussive sound);
    - modulation (64): mean absolute frame-to-frame change per band, log, centred (how fast the
      sound changes: syllable rate, beats);
    - loudness (16): histogram of per-frame energy relative to the clip's loudest frame, in
      3 dB bins over 48 dB, square-rooted (share of silence, dynamics, clipping).
    It says nothing about what is said: two speakers saying different things sound alike here.
    For spoken content use `speech-minilm` (speech-to-text, then the text encoder).
    Statistics are accumulated chunk by chunk, so an hour-long file takes flat memory.
    """

    id = "audio-logmel"
    modality = "audio"
    dim = 3 * N_MELS + LOUDNESS_BINS
    version = "audio-logmel/v1/16k-64mel-25ms-10ms/mean-std-delta-loudness"

    def __init__(self, max_seconds: float | None = 4 * 3600.0) -> None:
        self.filters = mel_filters()
        self.max_seconds = max_seconds

    def encode(self, batch: Sequence[AudioInput]) -> np.ndarray:
        out = np.zeros((len(batch), self.dim), dtype=np.float32)
        for i, source in enumerate(batch):
            out[i] = self.features(
                iter_audio_chunks(source, chunk_seconds=30.0, max_seconds=self.max_seconds)
            )
        return l2_normalise(out)

    def features(self, chunks: Iterator[np.ndarray]) -> np.ndarray:
        total = np.zeros(N_MELS, np.float64)
        total_sq = np.zeros(N_MELS, np.float64)
        total_delta = np.zeros(N_MELS, np.float64)
        energies: list[np.ndarray] = []
        n_frames = 0
        n_deltas = 0
        carry = np.zeros(0, np.float32)
        previous: np.ndarray | None = None
        for chunk in chunks:
            samples = np.concatenate([carry, chunk]) if len(carry) else chunk
            usable = (len(samples) - FRAME) // HOP + 1 if len(samples) >= FRAME else 0
            if usable == 0:
                carry = samples
                continue
            mel = log_mel(samples[: (usable - 1) * HOP + FRAME], self.filters).astype(np.float64)
            # Frames continue across chunks: the next chunk starts where the next frame does.
            carry = samples[usable * HOP :]
            total += mel.sum(0)
            total_sq += (mel**2).sum(0)
            seq = mel if previous is None else np.vstack([previous, mel])
            total_delta += np.abs(np.diff(seq, axis=0)).sum(0)
            n_deltas += len(seq) - 1
            previous = mel[-1:]
            energies.append(mel.max(1))
            n_frames += len(mel)
        if n_frames == 0:  # shorter than one frame: pad what there is into one frame
            mel = log_mel(carry, self.filters).astype(np.float64)
            total, total_sq, n_frames = mel.sum(0), (mel**2).sum(0), len(mel)
            energies.append(mel.max(1))
        mean = total / n_frames
        std = np.sqrt(np.maximum(total_sq / n_frames - mean**2, 0.0))
        delta = total_delta / max(n_deltas, 1)
        shape = mean - mean.mean()
        variability = np.log10(std + 1e-3)
        variability -= variability.mean()
        modulation = np.log10(delta + 1e-3)
        modulation -= modulation.mean()
        frame_energy = np.concatenate(energies) * 10.0  # log10 power -> dB
        relative = frame_energy.max() - frame_energy
        loud_bins = np.minimum((relative / 3.0).astype(int), LOUDNESS_BINS - 1)
        loudness = np.sqrt(np.bincount(loud_bins, minlength=LOUDNESS_BINS) / len(loud_bins))
        return np.concatenate(
            [_unit(shape), _unit(variability), _unit(modulation), _unit(loudness)]
        ).astype(np.float32)


# ---- transformers audio models ---------------------------------------------------------------


class HFAudioEncoder(Encoder):
    """A local CLAP (audio tower), wav2vec2-family (wav2vec2, HuBERT, WavLM, data2vec-audio) or
    Whisper (encoder only) directory, loaded with transformers, mean-pooled over time.

    Long audio is cut into windows the model was trained on (CLAP: its max_length_s, others
    30 s), each embedded, and the window vectors averaged weighted by their length; at most
    `max_seconds` of each file are read.
    """

    id = "hf-audio"
    modality = "audio"

    def __init__(self, model_path: str | Path, *, max_seconds: float = 600.0) -> None:
        import torch
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

        path = load_hf_model_dir(model_path, what="audio model (CLAP, wav2vec2 or Whisper)")
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        self.kind = config.model_type
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.extractor = AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
        self.sample_rate = int(getattr(self.extractor, "sampling_rate", SAMPLE_RATE))
        # CLAP crops randomly ("fusion") beyond its max length: windows of exactly that length
        # keep it deterministic.
        self.window_s = 30.0
        if self.kind == "clap":
            self.window_s = float(getattr(self.extractor, "max_length_s", 10))
        # wav2vec2-family models have a convolutional `feature_extractor`; anything else (a text
        # model, an image model) would fail later with a confusing shape error.
        if self.kind not in ("clap", "whisper") and not hasattr(self.model, "feature_extractor"):
            raise WorkbenchError(
                f"{path} holds a {self.kind!r} model; hf-audio takes CLAP, wav2vec2-family "
                "(wav2vec2, HuBERT, WavLM) or Whisper directories"
            )
        self.max_seconds = max_seconds
        self._torch = torch
        self.version = f"hf-audio/{self.kind}/{model_fingerprint(path)}/mean/{self.window_s:g}s"
        self.dim = int(self._embed_samples(np.zeros(self.sample_rate, np.float32)).shape[0])

    def encode(self, batch: Sequence[AudioInput]) -> np.ndarray:
        rows = []
        for source in batch:
            samples = load_audio(source, sample_rate=self.sample_rate, max_seconds=self.max_seconds)
            rows.append(self._embed_samples(samples))
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalise(np.stack(rows))

    def _embed_samples(self, samples: np.ndarray) -> np.ndarray:
        step = int(self.window_s * self.sample_rate)
        if len(samples) < self.sample_rate // 10:  # models need a few frames: pad to 0.1 s
            samples = np.pad(samples, (0, self.sample_rate // 10 - len(samples)))
        vectors: list[np.ndarray] = []
        weights: list[float] = []
        with self._torch.inference_mode():
            for start in range(0, len(samples), step):
                window = samples[start : start + step]
                if len(window) < self.sample_rate // 10 and vectors:
                    break  # a sliver at the end adds nothing but noise
                vectors.append(self._embed_window(window))
                weights.append(len(window))
        v = np.average(np.stack(vectors), axis=0, weights=np.asarray(weights, np.float64))
        return v.astype(np.float32)

    def _embed_window(self, window: np.ndarray) -> np.ndarray:
        torch = self._torch
        inputs = self.extractor(window, sampling_rate=self.sample_rate, return_tensors="pt")
        if self.kind == "clap":
            kwargs = {"input_features": inputs["input_features"]}
            if "is_longer" in inputs:
                kwargs["is_longer"] = inputs["is_longer"]
            out = self.model.get_audio_features(**kwargs)
            tensor = out if isinstance(out, torch.Tensor) else out.pooler_output
            return tensor[0].float().numpy()
        if self.kind == "whisper":
            hidden = self.model.get_encoder()(inputs["input_features"]).last_hidden_state[0]
            # Whisper pads every window to 30 s; pool only the frames that hold audio
            # (mel hop 160 samples, then the encoder's stride-2 convolution).
            valid = max(1, min(hidden.shape[0], int(np.ceil(len(window) / 320))))
            return hidden[:valid].mean(0).float().numpy()
        hidden = self.model(inputs["input_values"]).last_hidden_state[0]
        return hidden.mean(0).float().numpy()


# ---- speech to text --------------------------------------------------------------------------


@dataclass(frozen=True)
class Transcript:
    text: str
    audio_seconds: float
    elapsed_seconds: float


POCKETSPHINX_UTTERANCE_S = 20.0  # its decoder is built for utterances, not hour-long streams


def transcribe(source: AudioInput, *, max_seconds: float | None = 3600.0) -> Transcript:
    """English speech to text offline with pocketsphinx's bundled en-us model (16 kHz).

    Accuracy is far below modern models (expect a high word error rate on noisy or accented
    speech), but it runs anywhere without weights to fetch and keeps keywords often enough to
    make spoken content searchable.
    """
    from pocketsphinx import Decoder

    started = time.perf_counter()
    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
    words: list[str] = []
    seconds = 0.0
    for chunk in iter_audio_chunks(
        source, chunk_seconds=POCKETSPHINX_UTTERANCE_S, max_seconds=max_seconds
    ):
        seconds += len(chunk) / SAMPLE_RATE
        pcm = (np.clip(chunk, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        if hyp is not None and hyp.hypstr:
            words.append(hyp.hypstr)
    return Transcript(" ".join(words), seconds, time.perf_counter() - started)


class SpeechTextEncoder(Encoder):
    """Spoken content: pocketsphinx transcript -> the text encoder. Silence or non-speech gives
    an empty transcript, embedded like an empty text (all such items end up close together)."""

    id = "speech-minilm"
    modality = "audio"

    def __init__(self, text_encoder: Encoder) -> None:
        import pocketsphinx

        self.text_encoder = text_encoder
        self.dim = text_encoder.dim
        ps_version = getattr(pocketsphinx, "__version__", "5")
        self.version = f"speech-minilm/pocketsphinx-{ps_version}-en-us/{text_encoder.version}"
        self.last_transcripts: list[str] = []

    def encode(self, batch: Sequence[AudioInput]) -> np.ndarray:
        self.last_transcripts = [transcribe(x).text for x in batch]
        return self.text_encoder.encode(self.last_transcripts)
