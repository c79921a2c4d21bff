"""Training-memory calculator: weights, gradients, optimizer states, LoRA adapters, activations.

An estimate, not a measurement: it counts the bytes of the tensors a training step must hold, component by
component, for a Llama-style decoder (the seed's models: Llama-2/3, Mistral) described by its HF config.

    >>> from course.memory import model_spec, estimate
    >>> est = estimate(model_spec("llama-2-70b"), method="qlora", seq_len=1024, batch=1, grad_checkpointing=True)
    >>> print(est.table())

Conventions (every one of them is a parameter):

- ``GB`` is 10**9 bytes (the seed's "140GB of weights for 70B" is 70e9 × 2 bytes); a GPU's memory is given in
  bytes, ``A100_80GB`` = 80 GiB (81,920 MiB, what ``nvidia-smi`` reports for it).
- full fine-tune: weights and gradients in ``weight_dtype`` (bf16); optional fp32 master weights
  (``master_weights=True``, classic mixed precision).
- LoRA: frozen base weights in ``weight_dtype``; adapters, their gradients and optimizer states in
  ``adapter_dtype`` (fp32: peft up-casts bf16 adapters to fp32 by default, ``autocast_adapter_dtype=True``).
- QLoRA: the projection matrices of every block in NF4 (4 bits) plus their blockwise absmax scales
  (fp32 per block of 64, or with double quantization 8 bits per block + fp32 per 256 blocks); embeddings,
  norms and the LM head stay in ``weight_dtype``, as bitsandbytes leaves them.
- Optimizer states: AdamW keeps two fp32 moments (8 bytes per trainable parameter); 8-bit AdamW (and its paged
  variant) keeps two uint8 states plus one fp32 absmax per block of 256 (2 + 8/256 bytes); SGD keeps none.
- Activations: the tensors one Llama block saves for backward, in ``activation_dtype``, summed over the layers;
  with gradient checkpointing only each block's input is kept, plus one block's activations being recomputed.
  Attention with SDPA/flash saves no s×s score matrix (``eager_attention=True`` adds it). The logits of the
  LM head are counted in fp32 (the loss is computed in fp32).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .profiles import LLAMA_PROJECTIONS

GB = 10**9
GiB = 2**30
MiB = 2**20
A100_80GB = 80 * GiB
A100_40GB = 40 * GiB

DTYPE_BYTES = {"fp32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2, "int8": 1, "uint8": 1}
OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit", "sgd")
METHODS = ("full", "lora", "qlora")
NF4_BLOCKSIZE = 64              # bitsandbytes' default blocksize for 4-bit weights
DOUBLE_QUANT_BLOCKSIZE = 256    # blocks of absmax values that share one fp32 scale under double quantization
ADAM8BIT_BLOCKSIZE = 256        # bitsandbytes' blockwise 8-bit optimizer states


@dataclass(frozen=True)
class ModelSpec:
    """The shape of a Llama-style decoder: everything the counts below need (read from an HF config.json)."""

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of the k and v projections: smaller than ``hidden_size`` under grouped-query attention."""
        return self.num_kv_heads * self.head_dim

    def projection_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each of the seven projections of one block."""
        h, i = self.hidden_size, self.intermediate_size
        return {
            "q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
            "o_proj": (self.q_dim, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
        }


def _spec_from_config(cfg: dict, name: str) -> ModelSpec:
    for key in ("text_config",):          # multimodal configs nest the language model's config
        if key in cfg and "hidden_size" not in cfg:
            cfg = cfg[key]
    missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                           "num_attention_heads") if k not in cfg]
    if missing:
        raise ValueError(f"{name}: config lacks {', '.join(missing)}; a Llama-style decoder config is needed")
    heads = cfg["num_attention_heads"]
    return ModelSpec(
        name=name, vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["intermediate_size"], num_layers=cfg["num_hidden_layers"], num_heads=heads,
        num_kv_heads=cfg.get("num_key_value_heads") or heads,
        head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        attention_bias=bool(cfg.get("attention_bias", False)), mlp_bias=bool(cfg.get("mlp_bias", False)),
    )


# The published configs (config.json on the hub) of the seed's models, so the calculator works offline.
KNOWN_CONFIGS: dict[str, dict] = {
    "mistral-7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, head_dim=128),
    "llama-2-7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32),
    "llama-2-70b": dict(vocab_size=32000, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                        num_attention_heads=64, num_key_value_heads=8),
    "llama-3-8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8),
    "llama-3-70b": dict(vocab_size=128256, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                        num_attention_heads=64, num_key_value_heads=8),
}


def model_spec(name_or_config) -> ModelSpec:
    """A ``ModelSpec`` from a known name (``"mistral-7b"``, ``"llama-2-70b"``, ``"tiny"``, …), a config dict,
    a config.json path, or a model folder holding one."""
    if isinstance(name_or_config, ModelSpec):
        return name_or_config
    if isinstance(name_or_config, dict):
        return _spec_from_config(name_or_config, name_or_config.get("_name_or_path", "config"))
    key = str(name_or_config)
    if key.lower() in KNOWN_CONFIGS:
        return _spec_from_config(KNOWN_CONFIGS[key.lower()], key.lower())
    if key.lower() == "tiny":
        from .paths import TINY_BASE

        return replace(_spec_from_config(json.loads((TINY_BASE / "config.json").read_text()), "tiny"), name="tiny")
    path = Path(key)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ValueError(f"unknown model {key!r}: give one of {', '.join(['tiny', *KNOWN_CONFIGS])}, "
                         "a config.json, or a folder holding one")
    return _spec_from_config(json.loads(path.read_text()), path.parent.name or key)


def projection_params(spec: ModelSpec, targets=LLAMA_PROJECTIONS) -> int:
    """Parameters (weights and biases) in the named projections, summed over all layers."""
    shapes = spec.projection_shapes()
    total = 0
    for t in targets:
        fin, fout = shapes[t]
        bias = spec.attention_bias if t in ("q_proj", "k_proj", "v_proj", "o_proj") else spec.mlp_bias
        total += fin * fout + (fout if bias else 0)
    return total * spec.num_layers


def count_params(spec: ModelSpec) -> int:
    """All parameters: embeddings, the seven projections and two RMSNorms per block, the final norm, LM head."""
    spec = model_spec(spec)
    embed = spec.vocab_size * spec.hidden_size
    norms = (2 * spec.num_layers + 1) * spec.hidden_size
    head = 0 if spec.tie_word_embeddings else spec.vocab_size * spec.hidden_size
    return embed + projection_params(spec) + norms + head


def lora_params(spec: ModelSpec, r: int, targets=LLAMA_PROJECTIONS) -> int:
    """Trainable LoRA parameters: r·(in + out) for every targeted projection in every layer (GQA-aware)."""
    spec = model_spec(spec)
    shapes = spec.projection_shapes()
    unknown = set(targets) - set(shapes)
    if unknown:
        raise ValueError(f"unknown target modules {sorted(unknown)}; choose from {list(shapes)}")
    return spec.num_layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets)


def nf4_bits_per_param(double_quant: bool = True, blocksize: int = NF4_BLOCKSIZE,
                       dq_blocksize: int = DOUBLE_QUANT_BLOCKSIZE) -> float:
    """4 bits per weight plus the absmax scale overhead: 32/64 = 0.5 bit, or 8/64 + 32/(64·256) ≈ 0.127 bit
    with double quantization."""
    overhead = 8 / blocksize + 32 / (blocksize * dq_blocksize) if double_quant else 32 / blocksize
    return 4 + overhead


def qlora_linear_bytes(in_features: int, out_features: int, r: int, blocksize: int = NF4_BLOCKSIZE,
                       double_quant: bool = False, adapter_dtype: str = "fp32",
                       dq_blocksize: int = DOUBLE_QUANT_BLOCKSIZE) -> dict[str, int]:
    """Bytes of one QLoRA linear layer, piece by piece: ``codes`` (two 4-bit NF4 codes per byte), ``absmax``
    (one fp32 scale per block, or with double quantization one uint8 per block + one fp32 per ``dq_blocksize``
    blocks) and ``lora`` (A (r, in) and B (out, r) in ``adapter_dtype``). codes + absmax = weights ×
    ``nf4_bits_per_param`` / 8."""
    n = in_features * out_features
    blocks = math.ceil(n / blocksize)
    absmax = blocks + 4 * math.ceil(blocks / dq_blocksize) if double_quant else 4 * blocks
    return {"codes": math.ceil(n / 2), "absmax": absmax,
            "lora": r * (in_features + out_features) * DTYPE_BYTES[adapter_dtype]}


def optimizer_bytes_per_param(optimizer: str) -> float:
    if optimizer == "adamw":
        return 2 * 4
    if optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        return 2 * (1 + 4 / ADAM8BIT_BLOCKSIZE)
    if optimizer == "sgd":
        return 0
    raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")


def activation_elements_per_layer(spec: ModelSpec, seq_len: int, batch: int, eager_attention: bool = False) -> int:
    """Elements one Llama block saves for backward (a documented approximation).

    Norm 1 input and output, q, k, v (and q, k after RoPE), attention output, o_proj output (residual), norm 2
    input and output: 9·h-sized tensors (with q/k widths where they differ); gate, up, silu(gate) and their
    product (down_proj's input): 4·intermediate. Eager attention adds the softmaxed scores, heads·s·s.
    """
    s, b, h, i = seq_len, batch, spec.hidden_size, spec.intermediate_size
    widths = 2 * h + 2 * spec.q_dim + 3 * spec.kv_dim + spec.q_dim + 3 * h + 4 * i
    per_layer = s * b * widths
    if eager_attention:
        per_layer += spec.num_heads * b * s * s
    return per_layer


@dataclass
class MemoryEstimate:
    """Bytes per component of one training step; ``table()`` prints it."""

    model: str
    method: str
    optimizer: str
    seq_len: int
    batch: int
    grad_checkpointing: bool
    params: int
    trainable: int
    components: dict[str, int] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.components.values())

    def gpus_needed(self, gpu_bytes: int = A100_80GB) -> int:
        """How many GPUs of ``gpu_bytes`` the total needs if it is sharded perfectly (ZeRO-3 / FSDP)."""
        return math.ceil(self.total / gpu_bytes)

    def fits(self, gpu_bytes: int = A100_80GB) -> bool:
        return self.total <= gpu_bytes

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}

    def table(self, unit: str = "GB", gpu_bytes: int = A100_80GB, gpu_name: str = "A100 80GB") -> str:
        div = {"GB": GB, "GiB": GiB, "MiB": MiB, "MB": 10**6, "B": 1}[unit]
        title = (f"{self.model} · {self.method} · {self.optimizer} · seq {self.seq_len} × batch {self.batch}"
                 f" · grad checkpointing {'on' if self.grad_checkpointing else 'off'}")
        lines = [title, f"parameters {self.params:,} · trainable {self.trainable:,} "
                        f"({100 * self.trainable / self.params:.3f}%)",
                 f"{'component':<22}{unit:>12}  note", "-" * 72]
        for k, v in self.components.items():
            lines.append(f"{k:<22}{v / div:>12.3f}  {self.notes.get(k, '')}")
        lines.append("-" * 72)
        lines.append(f"{'total':<22}{self.total / div:>12.3f}  "
                     f"→ {self.gpus_needed(gpu_bytes)} × {gpu_name} (perfectly sharded); "
                     f"fits one: {'yes' if self.fits(gpu_bytes) else 'no'}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def weight_bytes(spec: ModelSpec, method: str = "full", weight_dtype: str = "bf16", double_quant: bool = True,
                 blocksize: int = NF4_BLOCKSIZE) -> int:
    """Bytes of the base model's weights: all in ``weight_dtype``, or (qlora) the block projections in NF4."""
    spec = model_spec(spec)
    n = count_params(spec)
    wb = DTYPE_BYTES[weight_dtype]
    if method != "qlora":
        return n * wb
    quantized = projection_params(spec)
    bits = nf4_bits_per_param(double_quant, blocksize)
    return math.ceil(quantized * bits / 8) + (n - quantized) * wb


def estimate(spec, method: str = "full", optimizer: str = "adamw", seq_len: int = 2048, batch: int = 1,
             grad_checkpointing: bool = False, r: int = 16, targets=LLAMA_PROJECTIONS, weight_dtype: str = "bf16",
             adapter_dtype: str = "fp32", activation_dtype: str = "bf16", master_weights: bool = False,
             double_quant: bool = True, eager_attention: bool = False) -> MemoryEstimate:
    """Per-component bytes of one training step (see the module docstring for every convention)."""
    spec = model_spec(spec)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    optimizer_bytes_per_param(optimizer)          # validates the name
    n = count_params(spec)
    c: dict[str, int] = {}
    notes: dict[str, str] = {}

    c["weights"] = weight_bytes(spec, method, weight_dtype, double_quant)
    if method == "qlora":
        notes["weights"] = (f"projections NF4 at {nf4_bits_per_param(double_quant):.3f} bits/param, "
                            f"rest {weight_dtype}")
    else:
        notes["weights"] = f"{n:,} × {DTYPE_BYTES[weight_dtype]} B ({weight_dtype})"

    if method == "full":
        trainable, tdtype = n, weight_dtype
        if master_weights:
            c["master_weights"] = n * 4
            notes["master_weights"] = "fp32 copy for mixed precision"
    else:
        trainable, tdtype = lora_params(spec, r, targets), adapter_dtype
        c["lora_adapters"] = trainable * DTYPE_BYTES[adapter_dtype]
        notes["lora_adapters"] = f"r={r} on {len(targets)} projections × {spec.num_layers} layers ({adapter_dtype})"
    c["gradients"] = trainable * DTYPE_BYTES[tdtype]
    notes["gradients"] = f"one per trainable parameter ({tdtype})"
    c["optimizer_states"] = math.ceil(trainable * optimizer_bytes_per_param(optimizer))
    notes["optimizer_states"] = {"adamw": "two fp32 moments (8 B/param)",
                                 "adamw_8bit": "two uint8 moments + absmax per 256",
                                 "paged_adamw_8bit": "two uint8 moments + absmax per 256, paged",
                                 "sgd": "none"}[optimizer]

    ab = DTYPE_BYTES[activation_dtype]
    per_layer = activation_elements_per_layer(spec, seq_len, batch, eager_attention)
    if grad_checkpointing:
        acts = (spec.num_layers * seq_len * batch * spec.hidden_size + per_layer) * ab
        notes["activations"] = "checkpointed: each block's input + one block recomputed"
    else:
        acts = spec.num_layers * per_layer * ab
        notes["activations"] = f"{spec.num_layers} blocks × saved tensors ({activation_dtype})"
    c["activations"] = acts
    c["logits"] = seq_len * batch * spec.vocab_size * 4
    notes["logits"] = "LM-head output in fp32 for the loss"
    return MemoryEstimate(model=spec.name, method=method, optimizer=optimizer, seq_len=seq_len, batch=batch,
                          grad_checkpointing=grad_checkpointing, params=n, trainable=trainable, components=c,
                          notes=notes)


def measured_weight_bytes(model) -> int:
    """Bytes a loaded (possibly bitsandbytes-quantized) model actually holds in parameters, buffers and
    4-bit quantization state (absmax, nested absmax, code tables), each distinct tensor counted once."""
    import torch

    seen: set[int] = set()
    total = 0

    def add(t):
        nonlocal total
        if isinstance(t, torch.Tensor) and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()

    for p in model.parameters():
        add(p)
        qs = getattr(p, "quant_state", None)
        if qs is not None:
            add(qs.absmax)
            add(qs.code)
            if getattr(qs, "offset", None) is not None:
                add(qs.offset)
            if getattr(qs, "state2", None) is not None:
                add(qs.state2.absmax)
                add(qs.state2.code)
    for b in model.buffers():
        add(b)
    return total
