"""Batched greedy generation with chat templates, and exact-match evaluation on tiny-world tasks."""

from __future__ import annotations

import torch

from .tinyworld.tasks import Example, exact_match

BAR_DELAY = 2.0          # seconds before a generation progress bar appears (quick calls print nothing)


def chat_prompt(tokenizer, instruction: str, template: str | None = None, context: str = "") -> str:
    """Render one user turn plus the generation prompt in a named chat template (None = default)."""
    content = f"{context}\n\n{instruction}" if context else instruction
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], chat_template=template, tokenize=False, add_generation_prompt=True
    )


def stop_token_ids(tokenizer) -> list[int]:
    """Every end-of-turn token the tokenizer knows (eos plus the chat formats' end tokens)."""
    ids = {tokenizer.eos_token_id}
    for t in ("<|im_end|>", "<|eot_id|>"):
        tid = tokenizer.convert_tokens_to_ids(t)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            ids.add(tid)
    return sorted(i for i in ids if i is not None)


def _in_notebook() -> bool:
    import sys

    return "ipykernel" in sys.modules


class _TokenBar:
    """A ``model.generate`` streamer that moves the course's stdout progress bar one step per generated token
    (the first ``put`` is the prompt). Results are unchanged: it only counts."""

    def __init__(self, bar):
        self.bar, self.prompt_seen, self.steps = bar, False, 0

    def put(self, value):
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.steps += 1
        self.bar.update(1)

    def end(self):
        pass


def _token_bar(progress: bool | str | None, total: int):
    """The bar for ``generate`` (None: none). Default (``progress=None``): shown inside a notebook kernel only, and
    only once the call has run for 2 s, so quick calls print nothing."""
    if progress is None:
        progress = _in_notebook()
    if not progress:
        return None
    from .notebook import progress as bar

    return bar(total=total, desc=progress if isinstance(progress, str) else "generating", unit="tok", delay=BAR_DELAY)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int = 24, batch_size: int = 32,
             do_sample: bool = False, temperature: float = 1.0, add_special_tokens: bool = False,
             progress: bool | str | None = None) -> list[str]:
    """Generate a completion for each already-rendered prompt; return only the new text.

    Prompts are left-padded in batches; generation stops at any end-of-turn token.
    Chat-rendered prompts carry their own start tokens, hence ``add_special_tokens=False``.
    ``progress``: a stdout progress bar over the generated tokens (True, or its label); default: in a notebook,
    shown once the call has run for 2 s.
    """
    model.eval()
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out: list[str] = []
    n_batches = -(-len(prompts) // batch_size)
    bar = _token_bar(progress, n_batches * max_new_tokens)
    try:
        for i in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=add_special_tokens).to(device)
            kwargs = dict(do_sample=do_sample, temperature=temperature) if do_sample else dict(do_sample=False)
            streamer = _TokenBar(bar) if bar is not None else None
            if streamer is not None:
                kwargs["streamer"] = streamer
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=stop_token_ids(tokenizer),
                                 pad_token_id=tokenizer.pad_token_id, **kwargs)
            new = gen[:, enc["input_ids"].shape[1]:]
            out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
            if streamer is not None:                     # stopped early at end-of-turn: count the rest
                bar.update(max_new_tokens - streamer.steps)
    finally:
        tokenizer.padding_side = side
        if bar is not None:
            bar.close()
    return [o.strip() for o in out]


def answer(model, tokenizer, examples: list[Example], template: str | None = None, **kw) -> list[str]:
    """The model's answers to tiny-world examples asked in a chat template."""
    prompts = [chat_prompt(tokenizer, e.instruction, template, e.context) for e in examples]
    return generate(model, tokenizer, prompts, **kw)


def evaluate_exact_match(model, tokenizer, examples: list[Example], template: str | None = None,
                         **kw) -> tuple[float, list[str]]:
    """Exact match of the model's chat answers on ``examples``; returns (score, generations).
    A progress bar shows in a notebook when it takes over 2 s (``progress=False`` turns it off)."""
    kw.setdefault("progress", "exact match" if _in_notebook() else None)
    gens = answer(model, tokenizer, examples, template, **kw)
    return exact_match(examples, gens), gens
