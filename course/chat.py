"""Chat templates for real tokenizers: what to use when a base model ships none (Mistral-7B base, SmolLM2 base).

trl (and ``apply_chat_template(..., tokenize=True)``) tokenizes the *rendered template* with
``add_special_tokens=False``: the tokenizer's own BOS is **not** added, so a template that does not render
``{{ bos_token }}`` trains and serves the model without the BOS it saw in pretraining. ``BASE_TEMPLATE`` is the
Alpaca format (the classic Dolly-15k format) that renders the tokenizer's BOS exactly once, at the start, and
ends each response with its EOS. Tokenize the rendered *string* yourself only with ``add_special_tokens=False``
(the default ``True`` would add a second BOS on Llama/Mistral tokenizers).
"""

from __future__ import annotations

from .tinyworld.templates import ALPACA, TEMPLATES

# Alpaca with the tokenizer's BOS once (rendered only if the tokenizer has one) and assistant turns marked for
# trl's assistant_only_loss ({% generation %} comes from the tiny world's ALPACA).
BASE_TEMPLATE = "{%- if bos_token -%}{{ bos_token }}{%- endif -%}" + ALPACA
BASE_TEMPLATE_NAME = "alpaca+bos"


def ensure_chat_template(tokenizer) -> str:
    """Give ``tokenizer`` a default chat template if it has none; return which: ``"own"`` or ``BASE_TEMPLATE_NAME``.

    A tokenizer that has a default template (an instruct model's, the tiny tokenizer's ChatML) keeps it: that is the
    format the model was tuned in. Named extra templates (``add_named_templates``) are not a default.
    """
    t = tokenizer.chat_template
    if isinstance(t, dict):
        if t.get("default"):
            return "own"
        tokenizer.chat_template = {"default": BASE_TEMPLATE, **t}
        return BASE_TEMPLATE_NAME
    if t:
        return "own"
    tokenizer.chat_template = BASE_TEMPLATE
    return BASE_TEMPLATE_NAME


def add_named_templates(tokenizer):
    """Let ``tokenizer`` render the lessons' named templates (``chat_template="chatml" | "alpaca" | "llama3"``).

    The tiny tokenizer ships them; a real tokenizer (SmolLM2's, Mistral's) has one template or none, and
    ``apply_chat_template(chat_template="alpaca")`` would then render the *string* ``"alpaca"``. Its own template stays
    the default; names it already has are kept. Returns the tokenizer.
    """
    t = tokenizer.chat_template
    named = dict(t) if isinstance(t, dict) else ({"default": t} if t else {})
    for name, template in TEMPLATES.items():
        named.setdefault(name, template)
    tokenizer.chat_template = named
    return tokenizer


def count_bos(tokenizer, ids) -> int:
    """How many BOS tokens ``ids`` holds (0 for a tokenizer without BOS)."""
    bos = tokenizer.bos_token_id
    return 0 if bos is None else sum(int(i) == bos for i in ids)
