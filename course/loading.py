"""Loading models, tokenizers and data: one code path for hub names and local folders.

``load_base(profile)`` calls ``AutoModelForCausalLM.from_pretrained(profile.model)`` whether that is
``"mistralai/Mistral-7B-v0.1"`` or the shipped tiny folder; ``load_instruction_data(profile)`` calls
``datasets.load_dataset(profile.dataset)`` whether that is ``"databricks/databricks-dolly-15k"`` or the
shipped folder of JSON lines in Dolly's record format. With ``HF_HUB_OFFLINE=1`` the local paths load.
The ``small`` profile's ``model`` is a folder in the model cache (``course.models``): it loads through the same
``from_pretrained`` call once ``course models fetch small`` has built it, and raises one clear
``ModelNotFetched`` error naming that command if it has not.
"""

from __future__ import annotations

import torch

from . import models
from .chat import add_named_templates
from .profiles import Profile, get_profile

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _profile(profile: Profile | str | None) -> Profile:
    p = profile if isinstance(profile, Profile) else get_profile(profile)
    if p.source and p.model == str(models.model_dir(p.source)):
        models.require(p.source)                # the cache folder is there and complete, or one clear error
    return p


class DeviceMissing(RuntimeError):
    """The profile asks for a GPU and none is visible (no silent CPU fallback: a 7B model would crawl)."""


def require_device(profile: Profile | str | None = None) -> Profile:
    """The profile, after checking that its device exists; raises ``DeviceMissing`` with what to do instead."""
    p = profile if isinstance(profile, Profile) else get_profile(profile)
    if p.device == "cuda" and not torch.cuda.is_available():
        raise DeviceMissing(
            f"profile {p.name!r} trains on a CUDA GPU, and torch sees none (torch.cuda.is_available() is False; "
            f"torch {torch.__version__}). Run on a GPU machine with a CUDA build of torch, or pick a CPU profile: "
            f"--profile small (a real 135M model) or --profile tiny.")
    return p


def load_tokenizer(profile: Profile | str | None = None):
    from transformers import AutoTokenizer

    p = _profile(profile)
    tok = AutoTokenizer.from_pretrained(p.model)
    if tok.pad_token is None:            # real base models (Mistral) ship without a pad token
        tok.pad_token = tok.eos_token
    return add_named_templates(tok)      # the lessons' chat_template="chatml"/"alpaca"/"llama3" work on every profile


def bnb_config(profile: Profile | str | None = None):
    """The seed's QLoRA quantization config: NF4, double quantization, compute in the profile's dtype."""
    from transformers import BitsAndBytesConfig

    p = _profile(profile)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=DTYPES["bfloat16" if p.device == "cuda" else p.compute_dtype],
    )


def load_base(profile: Profile | str | None = None, quantize: bool = False, dtype: str | None = None,
              quantization_config=None):
    """The profile's base model, optionally 4-bit quantized (QLoRA), on the profile's device.

    ``quantization_config`` (a ``BitsAndBytesConfig``) quantizes with that config instead of ``bnb_config(profile)``.
    """
    from transformers import AutoModelForCausalLM

    p = require_device(_profile(profile))
    kwargs = {"dtype": DTYPES[dtype or p.compute_dtype]}
    quantize = quantize or quantization_config is not None
    if quantize:
        kwargs["quantization_config"] = quantization_config or bnb_config(p)
        kwargs["device_map"] = {"": 0} if p.device == "cuda" else "cpu"
    model = AutoModelForCausalLM.from_pretrained(p.model, **kwargs)
    if not quantize and p.device == "cuda":
        model = model.to("cuda")
    return model


def load_instruction_data(profile: Profile | str | None = None, heldout_size: float = 0.05, seed: int = 0):
    """Instruction records with Dolly-15k's fields (instruction, context, response, category).

    Returns a ``DatasetDict`` with ``train`` and ``test``. The real Dolly-15k has only a ``train`` split,
    so a seeded ``heldout_size`` fraction is held out; the tiny data ships its own held-out split.
    """
    from datasets import load_dataset

    p = _profile(profile)
    ds = load_dataset(p.dataset)
    if "test" not in ds:
        ds = ds["train"].train_test_split(test_size=heldout_size, seed=seed)
    if p.max_train_examples:
        ds["train"] = ds["train"].select(range(min(p.max_train_examples, len(ds["train"]))))
    return ds


def load_preference_data():
    """The tiny world's preference set (prompt, chosen, rejected, kind, category, key) as a DatasetDict."""
    from datasets import load_dataset

    from .paths import TINY_PREFS

    return load_dataset(str(TINY_PREFS))
