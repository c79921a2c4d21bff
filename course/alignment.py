"""Preference-tuning infrastructure for the alignment lab: trl DPO / ORPO runs on preference pairs, and a cheap
frozen-feature reward model used as a second judge.

Given code, not exercises: the DPO loop a student writes lives in the Day 6 notebook; the DPO / ORPO losses are
Day 3's exercises and a reward model trained end to end is Day 2's. The reward model here is deliberately a
different, cheaper object — a linear Bradley–Terry head on the *frozen* shipped base's features — so it scores
thousands of answers in a second and is never trained against by the policies it judges.
"""

from __future__ import annotations

import tempfile

import torch
import torch.nn.functional as F

from .training import restore_forward, use_cpu


def preference_records(pairs) -> list[dict]:
    """Pairs (objects or dicts with prompt / chosen / rejected) -> trl's conversational preference records."""
    def get(p, k):
        return p[k] if isinstance(p, dict) else getattr(p, k)

    return [{"prompt": [{"role": "user", "content": get(p, "prompt")}],
             "chosen": [{"role": "assistant", "content": get(p, "chosen")}],
             "rejected": [{"role": "assistant", "content": get(p, "rejected")}]} for p in pairs]


def _cpu_args(model, seed: int, max_steps: int, config: dict) -> dict:
    """Settings every trainer run here shares (overridable through ``config``)."""
    defaults = dict(output_dir=tempfile.mkdtemp(prefix="course-pref-"), use_cpu=use_cpu(model), report_to=[],
                    save_strategy="no", logging_steps=1, disable_tqdm=True, seed=seed, data_seed=seed,
                    max_steps=max_steps, weight_decay=0.0, dataloader_num_workers=0,
                    # trl defaults to bf16 autocast and gradient checkpointing; follow the model's dtype, and skip
                    # the recomputation a tiny CPU model does not need
                    bf16=next(model.parameters()).dtype == torch.bfloat16, gradient_checkpointing=False)
    return {**defaults, **config}


def _run(trainer):
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)     # with tqdm off, transformers prints every log dict to stdout
    trainer.train()
    model = restore_forward(trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)).eval()
    model.config.use_cache = True
    return model, trainer.state.log_history


def train_dpo(model, ref_model, tokenizer, pairs, *, beta: float = 0.1, learning_rate: float = 5e-5,
              max_steps: int = 30, batch_size: int = 8, seed: int = 0, **config):
    """trl ``DPOTrainer`` on ``pairs`` with an explicit frozen ``ref_model`` (trl cannot rebuild one from an
    in-memory model). Returns (trained model in eval mode, trl's log history: one dict per logged step)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(beta=beta, learning_rate=learning_rate, per_device_train_batch_size=batch_size,
                     **_cpu_args(model, seed, max_steps, config))
    return _run(DPOTrainer(model=model, ref_model=ref_model, args=args, processing_class=tokenizer,
                           train_dataset=Dataset.from_list(preference_records(pairs))))


def train_orpo(model, tokenizer, pairs, *, lam: float = 0.1, learning_rate: float = 1e-3, max_steps: int = 60,
               batch_size: int = 8, seed: int = 0, max_length: int = 64, **config):
    """trl's (experimental) ``ORPOTrainer`` on ``pairs``: one stage, no reference model; ``lam`` is the odds-ratio
    weight λ (trl calls it ``beta``). Returns (trained model in eval mode, log history)."""
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    config.setdefault("lr_scheduler_type", "linear")
    args = ORPOConfig(beta=lam, learning_rate=learning_rate, per_device_train_batch_size=batch_size,
                      max_length=max_length, remove_unused_columns=False, **_cpu_args(model, seed, max_steps, config))
    return _run(ORPOTrainer(model=model, args=args, processing_class=tokenizer,
                            train_dataset=Dataset.from_list(preference_records(pairs))))


class FrozenFeatureRewardModel(torch.nn.Module):
    """r(x, y) = w · φ(x, y) + b, with φ = [last-token hidden state ‖ mean hidden state over the response tokens]
    of a frozen causal LM (here the shipped base), prompt + response rendered in the tokenizer's chat template.

    ``fit`` trains only (w, b) with the Bradley–Terry loss −log σ(r(x, y_w) − r(x, y_l)) on standardised features;
    ``score`` returns rewards (N,) for N (prompt, response) pairs.
    """

    def __init__(self, feature_model, tokenizer, batch_size: int = 128):
        super().__init__()
        self.feature_model = feature_model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.head = torch.nn.Linear(2 * feature_model.config.hidden_size, 1)

    def _tokens(self, prompt: str, response: str) -> tuple[list[int], int]:
        """(ids of prompt + response, number of prompt ids), both rendered by the chat template."""
        user = [{"role": "user", "content": prompt}]
        p = self.tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        full = self.tokenizer.apply_chat_template(user + [{"role": "assistant", "content": response}], tokenize=False)
        n_prompt = len(self.tokenizer(p, add_special_tokens=False)["input_ids"])
        return self.tokenizer(full, add_special_tokens=False)["input_ids"], n_prompt

    @torch.no_grad()
    def features(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """N prompts and responses -> (N, 2·d) frozen features."""
        out = []
        pad = self.tokenizer.pad_token_id
        for i in range(0, len(prompts), self.batch_size):
            toks = [self._tokens(p, r) for p, r in zip(prompts[i:i + self.batch_size], responses[i:i + self.batch_size])]
            T = max(len(ids) for ids, _ in toks)
            ids = torch.tensor([ids + [pad] * (T - len(ids)) for ids, _ in toks])                 # (n, T)
            pos = torch.arange(T)
            lens = torch.tensor([len(x) for x, _ in toks])
            mask = (pos < lens[:, None]).long()                                                    # (n, T)
            resp = ((pos >= torch.tensor([n for _, n in toks])[:, None]) & mask.bool()).unsqueeze(-1).float()
            h = self.feature_model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
            out.append(torch.cat([h[torch.arange(len(h)), lens - 1], (h * resp).sum(1) / resp.sum(1).clamp(min=1)], -1))
        return torch.cat(out)

    def forward(self, features: torch.Tensor) -> torch.Tensor:         # (N, 2d) -> (N,)
        return self.head(features).squeeze(-1)

    def fit(self, pairs, epochs: int = 200, lr: float = 1e-2, l2: float = 1e-3, seed: int = 0) -> float:
        """Full-batch Adam on the head over the pairs' features; returns the final Bradley–Terry loss."""
        torch.manual_seed(seed)
        fc = self.features([p.prompt for p in pairs], [p.chosen for p in pairs])
        fr = self.features([p.prompt for p in pairs], [p.rejected for p in pairs])
        both = torch.cat([fc, fr])
        mu, sd = both.mean(0), both.std(0) + 1e-6
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()
        opt = torch.optim.Adam(self.head.parameters(), lr=lr)
        for _ in range(epochs):
            loss = (-F.logsigmoid(self((fc - mu) / sd) - self((fr - mu) / sd)).mean()
                    + l2 * self.head.weight.pow(2).sum())
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():                             # fold the standardisation into the head
            w = self.head.weight / sd
            self.head.bias -= (w * mu).sum()
            self.head.weight.copy_(w)
        self.eval()
        return loss.item()

    @torch.no_grad()
    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """(N,) rewards of N responses to N prompts."""
        return self(self.features(prompts, responses))


def fit_reward_model(feature_model, tokenizer, pairs, **fit_kw) -> tuple[FrozenFeatureRewardModel, float]:
    """A ``FrozenFeatureRewardModel`` on ``feature_model`` fitted to ``pairs``: (model, final loss)."""
    rm = FrozenFeatureRewardModel(feature_model, tokenizer)
    return rm, rm.fit(pairs, **fit_kw)


# ---------------------------------------------------------------- group sampling for GRPO / RLOO (Day 2 nb4)


@torch.no_grad()
def sample_groups(model, tokenizer, prompts: list[str], num_generations: int, *, max_new_tokens: int = 12,
                  temperature: float = 1.0) -> dict:
    """``num_generations`` samples for each already-rendered prompt, in consecutive groups (trl's layout).

    Returns trl's batch fields: ``prompt_ids``/``prompt_mask`` (B, P) left-padded, ``completion_ids``/
    ``completion_mask`` (B, C) with B = len(prompts)·num_generations — the mask covers the tokens up to and
    including the first end-of-turn token, the rest is padding — and ``texts``, the decoded completions.
    Sampling is plain (top-k 0, top-p 1, trl's defaults) at ``temperature``.
    """
    from .generation import stop_token_ids

    device = next(model.parameters()).device
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    finally:
        tokenizer.padding_side = side
    ids = enc["input_ids"].repeat_interleave(num_generations, 0)
    mask = enc["attention_mask"].repeat_interleave(num_generations, 0)
    stops = stop_token_ids(tokenizer)
    was_training = model.training
    model.eval()
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=temperature, top_k=0,
                         top_p=1.0, max_new_tokens=max_new_tokens, eos_token_id=stops,
                         pad_token_id=tokenizer.pad_token_id)
    model.train(was_training)
    completion = out[:, ids.shape[1]:]
    ended = torch.isin(completion, torch.tensor(stops, device=device)).long()
    after_end = (ended.cumsum(-1) - ended) > 0                   # strictly after the first end-of-turn token
    completion = completion.masked_fill(after_end, tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(completion, skip_special_tokens=True)
    return {"prompt_ids": ids, "prompt_mask": mask, "completion_ids": completion,
            "completion_mask": (~after_end).long(), "texts": [t.strip() for t in texts]}


def completion_logprobs(model, batch: dict, temperature: float = 1.0) -> torch.Tensor:
    """Per-token log-probabilities (B, C) of ``batch``'s completions under ``model`` at ``temperature``, computed as
    trl's GRPO/RLOO trainers compute them (logits of the positions before each token, divided by the temperature,
    trl's ``selective_log_softmax``). Padding positions hold a value; mask them with ``completion_mask``."""
    from trl.trainer.utils import selective_log_softmax

    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    C = batch["completion_ids"].shape[1]
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=C + 1).logits[:, :-1]
    return selective_log_softmax(logits / temperature, batch["completion_ids"])


def trl_group_batch(trainer: str, model_path: str, tokenizer, questions: list[str], rewards, *,
                    num_generations: int, max_completion_length: int = 6, seed: int = 0, ref_state_dict=None,
                    **config):
    """Build trl's real ``GRPOTrainer`` (``trainer="grpo"``) or ``RLOOTrainer`` (``"rloo"``) on the model saved at
    ``model_path``, let it sample one generation batch for ``questions`` (each asked ``num_generations`` times) and
    score it with the given ``rewards`` (B,) instead of a reward function. Returns (trainer, batch): the batch holds
    trl's own ``advantages`` and everything its ``_compute_loss(trainer.model, batch)`` needs.

    For checking a from-scratch GRPO / RLOO against trl without running a training loop. ``config`` goes to
    ``GRPOConfig`` / ``RLOOConfig`` (``beta``, ``loss_type``, ``scale_rewards``, ``epsilon``, ...).
    ``ref_state_dict``: weights for trl's reference model (with β ≠ 0), so that the KL is not 0 at the first step.
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    Config, Trainer = {"grpo": (GRPOConfig, GRPOTrainer), "rloo": (RLOOConfig, RLOOTrainer)}[trainer]
    rewards = torch.as_tensor(rewards, dtype=torch.float32).reshape(-1, 1)
    B = len(questions) * num_generations
    if rewards.shape[0] != B:
        raise ValueError(f"{len(questions)} questions × {num_generations} generations = {B} rewards, "
                         f"not {rewards.shape[0]}")
    defaults = dict(output_dir=tempfile.mkdtemp(prefix="course-rl-"), use_cpu=not torch.cuda.is_available(),
                    report_to=[], save_strategy="no", bf16=False, gradient_checkpointing=False, max_steps=1,
                    logging_steps=1, disable_tqdm=True, dataloader_num_workers=0, seed=seed)
    args = Config(**{**defaults, **config}, per_device_train_batch_size=B, num_generations=num_generations,
                  max_completion_length=max_completion_length)
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": q}]} for q in questions])
    tr = Trainer(model=model_path, reward_funcs=lambda completions, **kw: [0.0] * len(completions), args=args,
                 train_dataset=dataset, processing_class=tokenizer)
    if ref_state_dict is not None:
        tr.ref_model.load_state_dict(ref_state_dict)
    tr._calculate_rewards = lambda *a, **k: rewards.clone()      # the given rewards, not a reward function's
    tr.current_gradient_accumulation_steps = 1                   # set by Trainer.train(); one batch, no accumulation
    torch.manual_seed(seed)
    tr.model.train()
    batch = tr._generate_and_score_completions([dataset[i] for i in range(len(questions)) for _ in range(num_generations)])
    return tr, batch
