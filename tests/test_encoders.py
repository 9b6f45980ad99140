"""Encoders: the registry, the real MiniLM (fast variant against the fp32 reference), the offline
image/audio/video defaults, transformers loading paths on tiny random models, and fusion."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import wave
from pathlib import Path

import media_factory as mf
import numpy as np
import pytest

from workbench.encoders import registry
from workbench.encoders.base import Encoder
from workbench.encoders.fusion import fuse, fuse_one
from workbench.encoders.media import MediaError, sample_times
from workbench.errors import WorkbenchError
from workbench.progress import no_progress
from workbench.schemas import EncoderSettings


def assert_unit_rows(x: np.ndarray, dim: int, n: int) -> None:
    assert x.dtype == np.float32
    assert x.shape == (n, dim)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


# ---- text --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX export for the whole session (exporting takes seconds)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def fast_text(model_cache: Path) -> Encoder:
    from workbench.encoders.text import MiniLMOnnxEncoder

    return MiniLMOnnxEncoder(cache=model_cache)


@pytest.fixture(scope="session")
def reference_text() -> Encoder:
    from workbench.encoders.text import MiniLMTorchEncoder

    return MiniLMTorchEncoder()


def varied_sentences() -> list[str]:
    """~200 sentences of every length, register and topic, some past the 256-token limit."""
    subjects = ["The moderator", "A new user", "my neighbour", "This account", "Our team"]
    verbs = ["posted", "reported", "deleted", "shared", "flagged"]
    objects = [
        "a video of the concert",
        "threats against a journalist",
        "a recipe for banana bread",
        "spam links to a crypto scam",
        "photos from the beach holiday",
        "an insult about someone's religion",
        "the quarterly earnings report",
        "a meme mocking the referee",
    ]
    out = [f"{s} {v} {o}." for s, v, o in itertools.product(subjects, verbs, objects)][:160]
    extras = [
        "lol",
        "ok",
        "!!!",
        "I can't believe this happened again, seriously?!",
        "Buy cheap followers now at www.example.com #ad #promo",
        "Ich habe das Video gestern gesehen und fand es schrecklich.",
        "¿Dónde está la biblioteca? Necesito estudiar para el examen.",
        "RT @someone: you people are the worst, go back where you came from",
        "The committee will reconvene on Tuesday to discuss the amended proposal.",
        "😂😂😂 this is too funny",
        "12345 67890",
        "Please stop sending me these messages or I will report you.",
    ]
    long_text = " ".join(
        f"Paragraph {i}: the platform reviewed the appeal and restored the post after "
        "a second reviewer disagreed with the original decision."
        for i in range(30)
    )
    out += [*extras, long_text, long_text[:600], long_text[:1500]]
    out += [f"Item number {i} in a list of {i * 7} things to buy at the market" for i in range(25)]
    return out


def test_fast_text_encoder_stays_within_quality_bound_of_fp32_reference(
    fast_text: Encoder, reference_text: Encoder
) -> None:
    texts = varied_sentences()
    assert len(texts) >= 195
    fast = fast_text.encode(texts)
    ref = reference_text.encode(texts)
    assert_unit_rows(fast, 384, len(texts))
    cos = (fast * ref).sum(1)
    assert cos.mean() >= 0.99, f"mean cosine {cos.mean():.4f} < 0.99"
    assert cos.min() >= 0.97, f"min cosine {cos.min():.4f} < 0.97 ({texts[int(cos.argmin())]!r})"


def test_minilm_puts_paraphrases_closer_than_unrelated_sentences(fast_text: Encoder) -> None:
    a, b, c, d = fast_text.encode(
        [
            "A man is playing a guitar.",
            "Someone is strumming a guitar.",
            "The central bank raised interest rates today.",
            "The stock market fell sharply this afternoon.",
        ]
    )
    assert a @ b > a @ c + 0.3
    assert c @ d > a @ d


def test_fast_text_version_names_its_variant_and_reference_stays_registered(
    fast_text: Encoder,
) -> None:
    from workbench.encoders.text import DEFAULT_VARIANT

    assert fast_text.id == "minilm-l6-v2"
    assert DEFAULT_VARIANT in fast_text.version
    assert registry.available("text")[0].id == "minilm-l6-v2"
    assert "minilm-l6-v2-torch" in {e.id for e in registry.available("text")}


def test_onnx_export_is_cached_by_source_checksum(model_cache: Path, fast_text: Encoder) -> None:
    from workbench.encoders.text import build_onnx, minilm_path, source_checksum

    path = build_onnx(cache=model_cache)
    assert path == fast_text.onnx_path  # type: ignore[attr-defined]
    assert path.parent.name == source_checksum(minilm_path())[:16]
    assert not list(path.parent.glob(".*.tmp"))  # no half-written files left behind


def test_text_order_within_batch_does_not_change_vectors(fast_text: Encoder) -> None:
    texts = ["short", "a somewhat longer sentence about moderation", "mid length text"]
    forward = fast_text.encode(texts)
    backward = fast_text.encode(texts[::-1])[::-1]
    np.testing.assert_allclose(forward, backward, atol=1e-5)


def assert_vectors_independent_of_batch(encoder: Encoder) -> None:
    """Each probe embedded alone equals itself inside batches of other sizes, orders and
    neighbours (a per-batch quantisation scale would leak the neighbours into it)."""
    pool = varied_sentences()
    probes = ["lol", "!!!", pool[3], pool[-1], pool[160 + 3], pool[-30]]
    alone = np.vstack([encoder.encode([p]) for p in probes])
    rng = np.random.default_rng(17)
    batches = [
        pool,
        pool[::-1],
        [pool[i] for i in rng.permutation(len(pool))],
        [*probes, *pool[:7]],
        [pool[i] for i in rng.permutation(len(pool))[:40]] + probes,
    ]
    for batch in batches:
        vectors = encoder.encode(batch)
        at = {text: i for i, text in enumerate(batch)}
        cos = (alone * vectors[[at[p] for p in probes]]).sum(1)
        assert cos.min() >= 0.9999, (
            f"{probes[int(cos.argmin())]!r}: cosine {cos.min():.5f} between alone and inside "
            f"a batch of {len(batch)}"
        )


def test_text_vector_does_not_depend_on_the_other_texts_of_its_batch(fast_text: Encoder) -> None:
    assert_vectors_independent_of_batch(fast_text)


def test_first_onnx_build_is_announced_and_a_cached_one_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workbench.encoders import text

    shown: list[tuple[int | None, str]] = []

    def recording(*, total: int | None, desc: str) -> object:
        shown.append((total, desc))
        return no_progress(total=total, desc=desc)

    # The real export takes ~10 s; what is under test is only the announcement around it.
    monkeypatch.setattr(text, "_export_fp32", lambda _src, target: target.write_bytes(b"onnx"))
    first = text.build_onnx("onnx-fp32", cache=tmp_path, progress=recording)
    assert first.read_bytes() == b"onnx"
    assert shown == [(1, "building the text model onnx-fp32 (once, ~10 s)")]
    assert text.build_onnx("onnx-fp32", cache=tmp_path, progress=recording) == first
    assert len(shown) == 1


# ---- registry ----------------------------------------------------------------------------------


def test_default_project_settings_resolve_to_registered_encoders(
    model_cache: Path, fast_text: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_MODEL_CACHE", str(model_cache))
    encoders = registry.encoders_for(EncoderSettings())
    assert {m: e.id for m, e in encoders.items()} == {
        "text": "minilm-l6-v2",
        "image": "image-stats",
        "audio": "audio-logmel",
        "video": "video-frames",
    }
    for modality, enc in encoders.items():
        assert enc.modality == modality
        assert enc.dim > 0 and enc.version
    # Loaded once, then reused.
    assert registry.encoder_for_modality("text", EncoderSettings()) is encoders["text"]


def test_unknown_or_misplaced_encoder_ids_are_refused_with_the_choices() -> None:
    with pytest.raises(WorkbenchError, match=r"unknown encoder 'nope'.*image-stats"):
        registry.encoder_for_modality("image", EncoderSettings(image="nope"))
    with pytest.raises(WorkbenchError, match="is a text encoder"):
        registry.encoder_for_modality("image", EncoderSettings(image="minilm-l6-v2"))
    with pytest.raises(WorkbenchError, match="image_model_path is not set"):
        registry.encoder_for_modality("image", EncoderSettings(image="clip"))


# ---- offline defaults --------------------------------------------------------------------------


def test_image_stats_is_deterministic_normalised_and_tells_layouts_apart(tmp_path: Path) -> None:
    from PIL import Image

    from workbench.encoders.image import ImageStatsEncoder

    enc = ImageStatsEncoder()
    paths = [mf.make_image(tmp_path / f"n{i}.png", size=(80, 60), seed=i) for i in range(2)]
    grad = np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (64, 1))
    left_right = Image.fromarray(np.stack([grad] * 3, axis=-1))
    top_bottom = left_right.transpose(Image.Transpose.ROTATE_90)
    recoloured = Image.fromarray(np.stack([grad, grad // 2, grad // 3], axis=-1))
    batch = [*paths, left_right, top_bottom, recoloured, left_right.resize((300, 200))]
    v = enc.encode(batch)
    assert_unit_rows(v, enc.dim, len(batch))
    np.testing.assert_array_equal(v, enc.encode(batch))
    # A resized copy stays closer than a rotated one, which shares the colours only.
    assert v[2] @ v[5] > 0.98
    assert v[2] @ v[5] > v[2] @ v[3] + 0.1
    assert v[2] @ v[4] > v[2] @ v[3]  # same layout, new palette: closer than new layout


def test_audio_logmel_is_deterministic_normalised_and_separates_sounds(tmp_path: Path) -> None:
    from workbench.encoders.audio import LogMelStatsEncoder

    enc = LogMelStatsEncoder()
    low = mf.make_audio(tmp_path / "low.wav", seconds=1.0, freq=220.0)
    low_flac = mf.make_audio(tmp_path / "low.flac", seconds=1.0, freq=220.0)
    high = mf.make_audio(tmp_path / "high.mp3", seconds=1.0, freq=3000.0)
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.1, 16_000).astype(np.float32)
    v = enc.encode([low, low_flac, high, noise])
    assert_unit_rows(v, enc.dim, 4)
    np.testing.assert_array_equal(v, enc.encode([low, low_flac, high, noise]))
    assert v[0] @ v[1] > 0.95  # the same tone through a lossless codec
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    assert v[0] @ v[1] > v[0] @ v[3] + 0.2


def test_log_mel_matches_transformers_audio_utils_spectrogram() -> None:
    from transformers.audio_utils import spectrogram, window_function

    from workbench.encoders.audio import FRAME, HOP, N_FFT, log_mel, mel_filters

    samples = np.random.default_rng(1).normal(0, 0.2, 8000).astype(np.float32)
    filters = mel_filters()
    ours = log_mel(samples, filters)
    theirs = spectrogram(
        samples,
        window_function(FRAME, "hann"),
        frame_length=FRAME,
        hop_length=HOP,
        fft_length=N_FFT,
        power=2.0,
        center=False,
        mel_filters=filters,
        mel_floor=1e-10,
        log_mel="log10",
    ).T
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


def test_log_mel_stats_do_not_depend_on_decode_chunking() -> None:
    from workbench.encoders.audio import LogMelStatsEncoder

    enc = LogMelStatsEncoder()
    samples = np.random.default_rng(2).normal(0, 0.1, 48_000).astype(np.float32)
    whole = enc.features(iter([samples]))
    pieces = enc.features(iter(np.array_split(samples, 7)))
    np.testing.assert_allclose(whole, pieces, atol=1e-4)


def test_video_frames_pool_images_and_keep_the_audio_track_apart(tmp_path: Path) -> None:
    enc = registry.encoder_for_modality("video", EncoderSettings())
    silent = mf.make_video(tmp_path / "a.mp4", seconds=3.0, fps=5)
    with_sound = mf.make_video(tmp_path / "b.webm", seconds=2.0, fps=5, with_audio=True)
    parts = enc.encode_parts([silent, with_sound])  # type: ignore[attr-defined]
    assert parts.has_audio.tolist() == [False, True]
    assert_unit_rows(parts.frames, enc.image_encoder.dim, 2)  # type: ignore[attr-defined]
    np.testing.assert_allclose(np.linalg.norm(parts.audio[1]), 1.0, atol=1e-5)
    v = enc.encode([silent, with_sound])
    assert_unit_rows(v, enc.dim, 2)
    np.testing.assert_array_equal(v, enc.encode([silent, with_sound]))
    image_dim = enc.image_encoder.dim  # type: ignore[attr-defined]
    assert not v[0, image_dim:].any()  # a silent video has nothing in the audio slot


def test_video_sampling_is_one_per_second_then_spread_evenly() -> None:
    assert sample_times(3.5, fps=1.0, max_frames=16) == [0.0, 1.0, 2.0, 3.0]
    spread = sample_times(3600.0, fps=1.0, max_frames=16)
    assert len(spread) == 16 and spread[0] > 0 and spread[-1] > 3000


@pytest.mark.parametrize(
    ("name", "encoder_id"),
    [("photo.png", "image-stats"), ("clip.wav", "audio-logmel"), ("movie.mp4", "video-frames")],
)
def test_corrupt_media_raises_a_clear_error_naming_the_file(
    tmp_path: Path, name: str, encoder_id: str
) -> None:
    path = tmp_path / name
    mf.make_zip_named(path)
    enc = registry.get_encoder(encoder_id)
    with pytest.raises(MediaError) as info:
        enc.encode([path])
    assert str(path) in str(info.value)
    assert info.value.problems[0].file == str(path)


def test_truncated_and_empty_images_name_the_file(tmp_path: Path) -> None:
    enc = registry.get_encoder("image-stats")
    truncated = mf.truncate(mf.make_image(tmp_path / "t.jpg", size=(200, 150)), keep=0.3)
    empty = mf.make_empty(tmp_path / "e.png")
    bomb = mf.make_bomb_png(tmp_path / "bomb.png")
    for path, reason in [(truncated, "truncated"), (empty, "empty"), (bomb, "limit")]:
        with pytest.raises(MediaError, match=reason) as info:
            enc.encode([path])
        assert str(path) in str(info.value)


# ---- transformers loading paths (tiny random models, no downloads) -----------------------------


def _bert_vocab_tokenizer(folder: Path) -> object:
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "cat", "dog"]
    vocab = folder / "vocab-src.txt"
    vocab.write_text("\n".join(words) + "\n")
    return BertTokenizer(str(vocab))


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    folder = tmp_path_factory.mktemp("tiny-clip")
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "vocab_size": 10,
            "hidden_size": 16,
            "intermediate_size": 24,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "eos_token_id": 3,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 24,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=8,
    )
    CLIPModel(config).eval().save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    _bert_vocab_tokenizer(folder).save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


def test_clip_directory_loads_through_transformers_for_images_and_text(
    tiny_clip_dir: Path, tmp_path: Path
) -> None:
    settings = EncoderSettings(image="clip", image_model_path=str(tiny_clip_dir))
    enc = registry.encoder_for_modality("image", settings)
    assert enc.id == "clip" and enc.dim == 8
    images = [mf.make_image(tmp_path / f"{i}.jpg", size=(40, 30), seed=i) for i in range(3)]
    v = enc.encode(images)
    assert_unit_rows(v, 8, 3)
    np.testing.assert_allclose(v, enc.encode(images), atol=1e-6)
    t = enc.encode_text(["a photo of a cat", "a dog"])  # type: ignore[attr-defined]
    assert_unit_rows(t, 8, 2)
    # The video encoder takes the configured image encoder.
    video = registry.encoder_for_modality("video", settings)
    assert video.image_encoder is enc  # type: ignore[attr-defined]


def test_a_text_model_directory_is_refused_as_clip(tmp_path: Path) -> None:
    from workbench.encoders.image import ClipImageEncoder
    from workbench.encoders.text import minilm_path

    with pytest.raises(WorkbenchError, match="without an image tower"):
        ClipImageEncoder(minilm_path())
    with pytest.raises(WorkbenchError, match="not a Hugging Face model directory"):
        ClipImageEncoder(tmp_path)


@pytest.fixture(scope="module")
def tiny_wav2vec2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = tmp_path_factory.mktemp("tiny-wav2vec2")
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=24,
        conv_dim=(8, 8),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        vocab_size=8,
    )
    Wav2Vec2Model(config).eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16_000, do_normalize=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_clap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    folder = tmp_path_factory.mktemp("tiny-clap")
    torch.manual_seed(0)
    config = ClapConfig(
        text_config={
            "vocab_size": 10,
            "hidden_size": 16,
            "intermediate_size": 24,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 20,
        },
        audio_config={
            "spec_size": 64,
            "num_mel_bins": 16,
            "window_size": 4,
            "patch_size": 2,
            "patch_stride": 2,
            "hidden_size": 32,
            "patch_embeds_hidden_size": 16,
            "depths": [1, 1],
            "num_attention_heads": [2, 2],
            "num_hidden_layers": 2,
            "enable_fusion": False,
        },
        projection_dim=8,
    )
    ClapModel(config).eval().save_pretrained(folder)
    # 2 s at 48 kHz with hop 480 = 201 frames, within the tiny model's 64 x 4 = 256.
    ClapFeatureExtractor(feature_size=16, max_length_s=2, truncation="rand_trunc").save_pretrained(
        folder
    )
    return folder


@pytest.mark.parametrize("model", ["tiny_wav2vec2_dir", "tiny_clap_dir"])
def test_audio_model_directory_loads_through_transformers(
    model: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    folder = request.getfixturevalue(model)
    settings = EncoderSettings(audio="hf-audio", audio_model_path=str(folder))
    enc = registry.encoder_for_modality("audio", settings)
    clips = [
        mf.make_audio(tmp_path / "a.wav", seconds=1.0, freq=300.0),
        mf.make_audio(tmp_path / "b.ogg", seconds=5.0, freq=900.0),  # several windows for CLAP
    ]
    v = enc.encode(clips)
    assert_unit_rows(v, enc.dim, 2)
    np.testing.assert_allclose(v, enc.encode(clips), atol=1e-5)


# ---- speech to text ----------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the speech is spoken by espeak-ng")
def test_pocketsphinx_transcribes_spoken_words_offline_and_feeds_the_text_encoder(
    tmp_path: Path, fast_text: Encoder
) -> None:
    from workbench.encoders.audio import SpeechTextEncoder, transcribe

    # Slow US English: pocketsphinx's small model gets this phrase word for word from every
    # espeak-ng voice tried at 80-120 words a minute (digits and "hello world" come back as
    # other words, and faster speech loses the "I").
    speech = tmp_path / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "100", "-w", str(speech), "I love you"],
        check=True,
        capture_output=True,
    )
    with wave.open(str(speech)) as w:
        seconds = w.getnframes() / w.getframerate()
    result = transcribe(speech)
    assert {"i", "love", "you"} <= set(result.text.lower().split()), result.text
    assert result.audio_seconds == pytest.approx(seconds, abs=0.05)
    enc = SpeechTextEncoder(fast_text)
    v = enc.encode([speech])
    assert_unit_rows(v, 384, 1)
    assert enc.last_transcripts == [result.text]
    np.testing.assert_allclose(v[0], fast_text.encode([result.text])[0], atol=1e-6)


# ---- fusion ------------------------------------------------------------------------------------


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_fused_cosine_is_the_weighted_mean_of_modality_cosines() -> None:
    rng = np.random.default_rng(3)
    layout = {"text": 6, "image": 4, "audio": 5}
    weights = {"text": 2.0, "image": 1.0, "audio": 0.5}
    vecs = {m: _unit(rng, 2, d) for m, d in layout.items()}
    everything = {m: np.ones(2, dtype=bool) for m in layout}
    f = fuse(vecs, everything, layout, weights)
    assert_unit_rows(f, sum(layout.values()), 2)
    per = {m: float(vecs[m][0] @ vecs[m][1]) for m in layout}
    expected = sum(weights[m] * per[m] for m in layout) / sum(weights.values())
    assert float(f[0] @ f[1]) == pytest.approx(expected, abs=1e-6)


def test_absent_modality_counts_as_zero_cosine_over_geometric_mean_of_weights() -> None:
    rng = np.random.default_rng(4)
    layout = {"text": 6, "image": 4}
    vecs = {m: _unit(rng, 2, d) for m, d in layout.items()}
    present = {"text": np.array([True, True]), "image": np.array([True, False])}
    f = fuse(vecs, present, layout)
    assert_unit_rows(f, 10, 2)
    assert not f[1, 6:].any()
    expected = float(vecs["text"][0] @ vecs["text"][1]) / np.sqrt(2.0 * 1.0)
    assert float(f[0] @ f[1]) == pytest.approx(expected, abs=1e-6)
    one = fuse_one({"text": vecs["text"][1]}, layout)
    np.testing.assert_allclose(one, f[1], atol=1e-7)


def test_fused_vector_of_a_single_modality_item_equals_its_modality_vector() -> None:
    rng = np.random.default_rng(5)
    layout = {"text": 6, "image": 4}
    text = _unit(rng, 1, 6)
    f = fuse({"text": text, "image": None}, {"text": np.array([True])}, layout)
    np.testing.assert_allclose(f[0, :6], text[0], atol=1e-7)
