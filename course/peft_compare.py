"""The PEFT family side by side on one task and budget (Day 1 · 5 and ``benchmarks/peft_family.py``).

Every method is peft's own implementation (the notebook builds each one from scratch and checks it against peft;
this module only trains them), trained by the same loop: AdamW (LoRA+ through ``create_loraplus_optimizer``), the
same steps, batch, data order and completion-only loss, each at its own learning rate. Per method it measures:

- trainable parameters (counted);
- **peak training memory, measured**: the process's resident-set high-water mark (``VmHWM``, reset through
  ``/proc/self/clear_refs``) during the training steps, minus the resident set just before them — what gradients,
  optimizer states and activations add on top of the loaded model (Linux only; ``nan`` elsewhere). Freed heap
  memory is returned to the OS (``malloc_trim``) before each measurement so it is not silently reused;
- CPU seconds per optimizer step (``time.process_time``; one thread in the notebook);
- held-out quality: exact match of greedy decoding, computed in one teacher-forced pass (greedy decoding returns the
  reference answer exactly when the argmax at every answer position, end-of-sequence included, is the reference
  token), and the mean held-out answer loss.
"""

from __future__ import annotations

import ctypes
import math
import statistics
import time
from dataclasses import dataclass

import torch

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class Method:
    """One row of the comparison: a peft config factory (None: full fine-tune), its learning rate, LoRA+ ratio."""

    name: str
    make_config: object          # () -> peft config, or None for the full fine-tune
    lr: float
    loraplus_ratio: float = 1.0


def lora_family(r_sweep=(1, 4, 16), lr=None) -> list[Method]:
    """The methods of the table with their learning rates (``lr`` overrides them all: used by the sweep).

    The learning rates were chosen per method by ``benchmarks/peft_family.py --sweep --steps 30 --batch 8`` (the
    notebook's budget; lowest validation loss on training examples set aside, seed 0); docs/BENCHMARKS.md holds it.
    """
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig

    def lora(r, **kw):
        return lambda: LoraConfig(r=r, lora_alpha=16, target_modules=ALL_LINEAR, **kw)

    rows = [Method("full fine-tune", None, 1e-3)]
    rows += [Method(f"LoRA r={r}", lora(r), 3e-3) for r in r_sweep]
    rows += [
        Method("rsLoRA r=16", lora(16, use_rslora=True), 3e-3),
        Method("DoRA r=16", lora(16, use_dora=True), 1e-2),
        Method("PiSSA r=16", lora(16, init_lora_weights="pissa"), 3e-3),
        Method("LoRA+ r=16", lora(16), 1e-3, loraplus_ratio=16.0),
        Method("(IA)3", lambda: IA3Config(task_type="CAUSAL_LM", target_modules=["k_proj", "v_proj", "down_proj"],
                                          feedforward_modules=["down_proj"]), 1e-1),
        Method("prompt tuning P=16", lambda: PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=16), 3e-1),
        Method("prefix tuning P=16", lambda: PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=16), 1e-1),
    ]
    if lr is not None:
        rows = [Method(m.name, m.make_config, lr, m.loraplus_ratio) for m in rows]
    return rows


def splits(tok, heldout_count: int | None = None, max_length: int = 48):
    """Encoded (train, validation, held-out) tiny-world data: every 8th training example is set aside for
    choosing learning rates; the held-out examples ask about items the training data never mentions, spread evenly
    over the split (``heldout_count`` of them, or all)."""
    from .tinyworld.tasks import examples

    train = examples("train")
    held = examples("heldout")
    if heldout_count:
        held = held[::max(1, math.ceil(len(held) / heldout_count))]
    return (encode(tok, [e for i, e in enumerate(train) if i % 8], max_length),
            encode(tok, train[::8], max_length), encode(tok, held, max_length))


def encode(tok, exs, max_length: int = 64):
    """Chat prompt + response + eos, right-padded; labels -100 on the prompt and the padding.
    -> (input_ids, attention_mask, labels), each (n, longest)."""
    from .generation import chat_prompt

    ids, labels = [], []
    for e in exs:
        p = tok(chat_prompt(tok, e.instruction, None, e.context), add_special_tokens=False)["input_ids"]
        r = tok(e.response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids.append((p + r)[:max_length])
        labels.append(([-100] * len(p) + r)[:max_length])
    n = max(map(len, ids))
    mask = torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in ids])
    return (torch.tensor([s + [tok.pad_token_id] * (n - len(s)) for s in ids]), mask,
            torch.tensor([s + [-100] * (n - len(s)) for s in labels]))


def heldout_scores(model, data, batch_size: int = 64) -> tuple[float, float]:
    """(greedy exact match, mean answer-token loss) on encoded held-out data, one teacher-forced pass per batch.

    Prompt and prefix tuning return logits for their virtual tokens too: the last ``n`` positions are the input's.
    """
    ids, mask, labels = data
    hits, nll, count = 0, 0.0, 0
    with torch.no_grad():
        for i in range(0, len(ids), batch_size):
            x, m, y = ids[i:i + batch_size], mask[i:i + batch_size], labels[i:i + batch_size]
            logits = model(input_ids=x, attention_mask=m).logits[:, -x.shape[1]:].float()
            pred, gold = logits[:, :-1], y[:, 1:]                       # position t predicts token t + 1
            answer = gold != -100
            hits += int(((pred.argmax(-1) == gold) | ~answer).all(dim=1).sum())
            nll += float(torch.nn.functional.cross_entropy(pred[answer], gold[answer], reduction="sum"))
            count += int(answer.sum())
    return hits / len(ids), nll / count


def _malloc_trim():
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:                                              # not glibc
        pass


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> int | None:
    """Return freed heap to the OS, reset the resident-set high-water mark; -> current resident KiB (None: n/a)."""
    _malloc_trim()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _rss_kib("VmRSS")


def peak_rss_since(start_kib: int | None) -> float:
    """MiB the resident-set high-water mark rose above ``start_kib`` (from ``reset_peak_rss``); nan if unknown."""
    peak = _rss_kib("VmHWM")
    if start_kib is None or peak is None:
        return float("nan")
    return max(peak - start_kib, 0) / 1024


def train_method(method: Method, seed: int, steps: int, batch: int, train, heldout, base=None) -> dict:
    """Train one method from the tiny base on ``train`` (encoded); measure it (see the module docstring)."""
    from peft import get_peft_model
    from peft.optimizers import create_loraplus_optimizer

    from .loading import load_base

    torch.manual_seed(seed)
    model = load_base(base or "tiny")
    if method.make_config is not None:
        model = get_peft_model(model, method.make_config())
    trainable = [p for p in model.parameters() if p.requires_grad]
    if method.loraplus_ratio != 1.0:
        opt = create_loraplus_optimizer(model, torch.optim.AdamW, lr=method.lr,
                                        loraplus_lr_ratio=method.loraplus_ratio, weight_decay=0.0)
    else:
        opt = torch.optim.AdamW(trainable, lr=method.lr, weight_decay=0.0)
    ids, mask, labels = train
    g = torch.Generator().manual_seed(seed)
    order = [torch.randint(0, len(ids), (batch,), generator=g) for _ in range(steps)]
    model.train()
    start = reset_peak_rss()
    t0 = time.process_time()
    for idx in order:
        loss = model(input_ids=ids[idx], attention_mask=mask[idx], labels=labels[idx]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    cpu = (time.process_time() - t0) / steps
    peak = peak_rss_since(start)
    model.eval()
    em, heldout_loss = heldout_scores(model, heldout)
    return dict(method=method.name, seed=seed, trainable=sum(p.numel() for p in trainable), peak_mib=peak,
                cpu_s_per_step=cpu, em=em, heldout_loss=heldout_loss, final_train_loss=float(loss))


def ci95(xs) -> float:
    """Half-width of a 95% t-interval for the mean (nan for fewer than 2 values)."""
    xs = list(xs)
    if len(xs) < 2:
        return float("nan")
    t = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}
    return t.get(len(xs), 1.96) * statistics.stdev(xs) / math.sqrt(len(xs))


def summarize_runs(results: list[dict]) -> dict[str, dict]:
    """Per method: trainable, and mean / 95% CI half-width over seeds of every measured column."""
    out: dict[str, dict] = {}
    for r in results:
        out.setdefault(r["method"], {"trainable": r["trainable"], "runs": []})["runs"].append(r)
    for row in out.values():
        for k in ("peak_mib", "cpu_s_per_step", "em", "heldout_loss"):
            vals = [r[k] for r in row["runs"]]
            row[k] = statistics.mean(vals)
            row[k + "_ci"] = ci95(vals)
        row["em_seeds"] = [r["em"] for r in row["runs"]]
    return out


def format_table(summary: dict[str, dict]) -> str:
    """The comparison as fixed-width text, one method per line (mean ± 95% CI over seeds)."""
    lines = [f"{'method':20s} {'trainable':>10s} {'peak MiB':>14s} {'CPU ms/step':>13s} {'held-out EM':>15s} "
             f"{'held-out loss':>15s}  EM per seed"]
    for name, r in summary.items():
        lines.append(f"{name:20s} {r['trainable']:>10,d} {r['peak_mib']:>7.1f} ± {r['peak_mib_ci']:<4.1f} "
                     f"{1000 * r['cpu_s_per_step']:>6.1f} ± {1000 * r['cpu_s_per_step_ci']:<4.1f} "
                     f"{r['em']:>6.3f} ± {r['em_ci']:.3f} {r['heldout_loss']:>6.3f} ± {r['heldout_loss_ci']:.3f}  "
                     f"{[round(e, 3) for e in r['em_seeds']]}")
    return "\n".join(lines)
