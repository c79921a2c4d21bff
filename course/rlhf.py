"""Shared pieces of Day 2's RLHF notebooks: the SFT starting policy and the likelihood reward model.

Given code, not exercises. Notebook 1 builds the *competent* reward model from these pieces (and fits its head with
the student's Bradley–Terry loss); notebook 2 optimises it with PPO. The reward model is

    r(x, y) = w1 · ℓ̄(y | x) + w2 · (ℓ̄(y | x) − ℓ̄(y | ∅)) + b

on a frozen SFT model, where ℓ̄ is the mean per-token log-probability of the response (its end token included): the
likelihood knows the facts, the pointwise mutual information term (the same response after an empty prompt) stops a
response that is likely after *any* prompt from scoring high everywhere.
"""

from __future__ import annotations

import contextlib
import io

import torch
import torch.nn.functional as F

from .loading import _profile, load_base


def sft_policy(profile, tokenizer, examples, *, steps: int = 30, seed: int = 0, learning_rate: float = 2e-3):
    """A full fine-tune with trl's SFTTrainer on ``examples``, returned as a fresh model in eval mode, frozen
    (trl patches the trained module's forward in place, so its weights go into a clean copy). ``steps`` and
    ``learning_rate`` are the tiny model's; the profile scales them (``Profile.steps``, ``Profile.lr``)."""
    from .training import train_sft

    p = _profile(profile)
    with contextlib.redirect_stdout(io.StringIO()):          # trl prints one log line per step
        trained, _ = train_sft(load_base(p), tokenizer, examples, lora=None, max_steps=p.steps(steps),
                               learning_rate=p.lr(learning_rate), seed=seed)
    model = load_base(p)
    model.load_state_dict(trained.state_dict())
    return model.eval().requires_grad_(False)


def _chat(tokenizer, prompt: str, response: str | None = None) -> list[int]:
    messages = [{"role": "user", "content": prompt}]
    if response is not None:
        messages.append({"role": "assistant", "content": response})
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                         add_generation_prompt=response is None)["input_ids"]


@torch.no_grad()
def mean_logprob(lm, tokenizer, prompts: list[str], responses: list[str], chunk: int = 128) -> torch.Tensor:
    """(N,) mean over the response tokens (the assistant turn, its end token included) of log π(y_t | x, y_<t);
    computed ``chunk`` sequences at a time (the (n, T, V) logits of a whole preference set would not fit in cache)."""
    if len(prompts) > chunk:
        return torch.cat([mean_logprob(lm, tokenizer, prompts[i:i + chunk], responses[i:i + chunk], chunk)
                          for i in range(0, len(prompts), chunk)])
    seqs, starts = [], []
    for p, r in zip(prompts, responses):
        starts.append(len(_chat(tokenizer, p)))
        seqs.append(_chat(tokenizer, p, r))
    T = max(len(s) for s in seqs)
    ids = torch.tensor([s + [tokenizer.pad_token_id] * (T - len(s)) for s in seqs])          # (N, T)
    lens, starts = torch.tensor([len(s) for s in seqs]), torch.tensor(starts)
    pos = torch.arange(T)
    logits = lm(input_ids=ids, attention_mask=(pos < lens[:, None]).long()).logits         # (N, T, V)
    token_logp = logits[:, :-1].log_softmax(-1).gather(2, ids[:, 1:, None]).squeeze(-1)      # (N, T-1): scores t+1
    in_response = ((pos[1:] >= starts[:, None]) & (pos[1:] < lens[:, None])).float()
    return (token_logp * in_response).sum(-1) / in_response.sum(-1)


def _bradley_terry(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    return F.softplus(r_rejected - r_chosen).mean()           # = −log σ(r_w − r_l), stable


class LikelihoodRewardModel(torch.nn.Module):
    """r(x, y) = head(ℓ̄(y|x), ℓ̄(y|x) − ℓ̄(y|∅)) on a frozen LM; only the head's 3 parameters are trained."""

    def __init__(self, lm, tokenizer):
        super().__init__()
        self.lm = lm.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.head = torch.nn.Linear(2, 1)
        torch.nn.init.zeros_(self.head.weight), torch.nn.init.zeros_(self.head.bias)

    def features(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """(N, 2): mean log-prob after the prompt, and its excess over the same response after an empty prompt."""
        cond = mean_logprob(self.lm, self.tokenizer, prompts, responses)
        return torch.stack([cond, cond - mean_logprob(self.lm, self.tokenizer, [""] * len(prompts), responses)], -1)

    def forward(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """N prompts and responses -> rewards (N,)."""
        return self.head(self.features(prompts, responses)).squeeze(-1)

    def fit(self, rows, loss_fn=None, steps: int = 200, lr: float = 0.05) -> float:
        """Full-batch Adam on the head over (prompt, chosen, rejected) dicts with ``loss_fn(r_chosen, r_rejected)``
        (default: the Bradley–Terry loss); returns the final loss."""
        loss_fn = loss_fn or _bradley_terry
        self.head.requires_grad_(True)
        prompts = [r["prompt"] for r in rows]
        f_chosen = self.features(prompts, [r["chosen"] for r in rows])
        f_rejected = self.features(prompts, [r["rejected"] for r in rows])
        optimizer = torch.optim.Adam(self.head.parameters(), lr=lr)
        for _ in range(steps):
            loss = loss_fn(self.head(f_chosen).squeeze(-1), self.head(f_rejected).squeeze(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        self.head.requires_grad_(False)
        return loss.item()
