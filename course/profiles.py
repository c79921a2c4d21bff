"""Run profiles: one table in one place.

``tiny`` is the default: the shipped tiny base model and data, offline, on a CPU, in seconds.
``laptop`` is a real small hub model; ``a100`` is the seed's Lab 02 (Mistral-7B base + Dolly-15k, QLoRA).
Notebooks read ``PROFILE`` from their parameters cell; the ``COURSE_PROFILE`` environment variable
overrides it. Model and dataset names go through the same ``from_pretrained`` / ``load_dataset``
calls whether they are hub names or local folders (see ``course.loading``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace

from . import paths

LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Profile:
    name: str
    model: str                  # hub id or local folder, passed to from_pretrained
    dataset: str                # hub id or local folder, passed to load_dataset
    device: str                 # "cpu" or "cuda"
    compute_dtype: str          # dtype of the 4-bit compute and of LoRA training
    needs_hub: bool
    max_seq_len: int
    per_device_batch_size: int
    gradient_accumulation_steps: int
    learning_rate: float
    epochs: float
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    optim: str = "paged_adamw_8bit"
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    gradient_checkpointing: bool = False
    max_train_examples: int | None = None
    notes: str = ""

    @property
    def effective_batch_size(self) -> int:
        return self.per_device_batch_size * self.gradient_accumulation_steps

    def as_dict(self) -> dict:
        return {**asdict(self), "effective_batch_size": self.effective_batch_size}


PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny", model=str(paths.TINY_BASE), dataset=str(paths.TINY_DOLLY), device="cpu",
        compute_dtype="float32", needs_hub=False, max_seq_len=128, per_device_batch_size=8,
        gradient_accumulation_steps=2, learning_rate=1e-2, epochs=1.0,
        notes="shipped tiny Llama (4 layers, d=128) + tiny-world tasks in Dolly format; offline CPU, seconds",
    ),
    "laptop": Profile(
        name="laptop", model="HuggingFaceTB/SmolLM2-135M", dataset="databricks/databricks-dolly-15k",
        device="cpu", compute_dtype="float32", needs_hub=True, max_seq_len=512, per_device_batch_size=4,
        gradient_accumulation_steps=8, learning_rate=2e-4, epochs=1.0, max_train_examples=2000,
        notes="a real small model on a laptop; needs hub access once to download",
    ),
    "a100": Profile(
        name="a100", model="mistralai/Mistral-7B-v0.1", dataset="databricks/databricks-dolly-15k",
        device="cuda", compute_dtype="bfloat16", needs_hub=True, max_seq_len=1024, per_device_batch_size=4,
        gradient_accumulation_steps=4, learning_rate=2e-4, epochs=1.0, gradient_checkpointing=True,
        notes="the seed's Lab 02: Mistral-7B base, Dolly-15k, QLoRA r=16 α=32, paged_adamw_8bit, 1 epoch on one A100",
    ),
}
DEFAULT_PROFILE = "tiny"


def get_profile(name: str | None = None, **overrides) -> Profile:
    """The profile named by ``COURSE_PROFILE`` if set, else ``name``, else ``tiny``; fields may be overridden."""
    chosen = os.environ.get("COURSE_PROFILE") or name or DEFAULT_PROFILE
    if chosen not in PROFILES:
        raise KeyError(f"unknown profile {chosen!r}; choose one of {', '.join(PROFILES)}")
    return replace(PROFILES[chosen], **overrides) if overrides else PROFILES[chosen]


def table() -> str:
    """The profile table as Markdown (the README's copy is checked against it by a test)."""
    cols = ["name", "model", "dataset", "device", "compute_dtype", "lora_r", "lora_alpha", "optim",
            "effective_batch_size", "max_seq_len", "epochs"]
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for p in PROFILES.values():
        d = p.as_dict()
        d["model"] = "shipped tiny base" if p.name == "tiny" else p.model
        d["dataset"] = "shipped tiny-dolly" if p.name == "tiny" else p.dataset
        rows.append("| " + " | ".join(str(d[c]) for c in cols) + " |")
    return "\n".join(rows)
