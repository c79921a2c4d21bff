"""Day 6 (alignment lab): the reference DPO loop against trl's
DPOTrainer on other data, β and batch size than the notebook; best-of-n and its cost against brute force; win-rate
against the tiny world's `prefers`. Full autograde + mutants: tests/test_days_autograde.py."""

from __future__ import annotations

import copy

import jupytext
import pytest
import torch

from course.authoring import reference
from course.paths import SOLUTIONS

DAY = "day6_alignment_lab"
SOURCES = sorted((SOLUTIONS / DAY).glob("[0-9][0-9]_*.py"))
LOOP, BON = (SOLUTIONS / DAY / f"{n}.py" for n in ("01_dpo_loop_and_comparison", "02_best_of_n"))
PRELUDE = "import copy\nimport torch\nimport torch.nn.functional as F\n"


def solution_namespace(src, grade_ids, **names):
    """Execute the cells with these grade_ids (reference solutions, given code) into one namespace."""
    return reference.solution_namespace(src, grade_ids, PRELUDE, **names)


def test_notebooks():
    assert [s.stem for s in SOURCES] == ["01_dpo_loop_and_comparison", "02_best_of_n", "03_constitutional_ai"]


# The structure check (split tests, two planted bugs per exercise) is tests/test_day_structure.py, for every day.


def test_no_hand_typed_results_in_markdown():
    """The lessons' prose states no measured figure: every number of a result is printed by a cell."""
    import re

    for src in SOURCES:
        for c in jupytext.read(src).cells:
            if c.cell_type == "markdown":
                assert not re.search(r"\d+\.\d+\s*%|\b0\.\d{3,}\b", c.source), f"{src.name}: a typed result in prose"


# ---------------------------------------------------------------- notebook 1: the loop equals trl

@pytest.fixture(scope="module")
def tiny():
    from course.loading import load_base, load_tokenizer
    from course.notebook import quiet

    quiet()
    tok = load_tokenizer("tiny")
    policy = load_base("tiny").eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():                     # a starting policy that is not the shipped base
        for p in policy.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    return tok, policy


def test_reference_win_rate_matches_tinyworld_prefers():
    from course.tinyworld import preferences as P

    ns = solution_namespace(LOOP, {"win_rate"})
    rows = P.preferences("heldout")[:60]
    a = [r.chosen if i % 3 else r.rejected for i, r in enumerate(rows)]
    b = [r.rejected if i % 2 else r.chosen for i, r in enumerate(rows)]
    sa = torch.tensor([P.judge_score(r.category, r.key, x) for r, x in zip(rows, a)])
    sb = torch.tensor([P.judge_score(r.category, r.key, x) for r, x in zip(rows, b)])
    expected = sum(P.prefers(r.category, r.key, x, y) for r, x, y in zip(rows, a, b)) / len(rows)
    assert abs(ns["win_rate"](sa, sb) - expected) < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("beta,batch_size", [(0.5, 4)])
def test_reference_dpo_loop_equals_trl(tiny, beta, batch_size):
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    from course.tinyworld import preferences as P

    tok, policy = tiny
    pairs = P.preferences("heldout")                  # other pairs than the notebook's
    ns = solution_namespace(LOOP, {"given_day3_pieces", "dpo_step", "dpo_train"}, tokenizer=tok, train_prefs=pairs)
    steps, lr, seed = 5, 2e-4, 7
    mine = ns["dpo_train"](copy.deepcopy(policy), pairs, steps, beta=beta, lr=lr, batch_size=batch_size, seed=seed)
    g = torch.Generator().manual_seed(seed)
    order = [i for _ in range(steps) for i in torch.randint(len(pairs), (batch_size,), generator=g).tolist()]
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": pairs[i].prompt}],
                             "chosen": [{"role": "assistant", "content": pairs[i].chosen}],
                             "rejected": [{"role": "assistant", "content": pairs[i].rejected}]} for i in order])
    trainer = DPOTrainer(model=copy.deepcopy(policy), ref_model=copy.deepcopy(policy), train_dataset=ds,
                         processing_class=tok, args=DPOConfig(
                             output_dir="/tmp/course_test_day6", beta=beta, learning_rate=lr, max_steps=steps,
                             per_device_train_batch_size=batch_size, lr_scheduler_type="constant", weight_decay=0.0,
                             max_grad_norm=0.0, train_sampling_strategy="sequential", bf16=False, use_cpu=True,
                             report_to=[], save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0))
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    trl_losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    trl_acc = [h["rewards/accuracies"] for h in trainer.state.log_history if "rewards/accuracies" in h]
    assert len(trl_losses) == steps
    assert max(abs(a - b) for a, b in zip(mine["loss"], trl_losses)) < 1e-4
    assert max(abs(a - b) for a, b in zip(mine["accuracy"], trl_acc)) < 1e-6
    assert mine["loss"][-1] < mine["loss"][0]


def test_reference_summarize_against_statistics():
    import statistics

    ns = solution_namespace(LOOP, {"summarize"})
    g = torch.Generator().manual_seed(0)
    vals = torch.rand(3, 4, generator=g).tolist()
    res = {(m, s): {"x": vals[i][s]} for i, m in enumerate("abc") for s in range(4)}
    out = ns["summarize"](res, "abc", range(4), "x")
    for i, m in enumerate("abc"):
        assert abs(out[m][0] - statistics.mean(vals[i])) < 1e-9
        assert abs(out[m][1] - statistics.stdev(vals[i])) < 1e-9


# ---------------------------------------------------------------- notebook 2: best-of-n

def test_reference_best_of_n_and_cost_against_brute_force():
    ns = solution_namespace(BON, {"best_of_n", "forward_passes"})
    g = torch.Generator().manual_seed(5)
    rewards = torch.randn(20, 16, generator=g)
    lengths = torch.randint(1, 30, (20, 16), generator=g)
    for n in (1, 2, 4, 16):
        idx = ns["best_of_n"](rewards, n)
        for p in range(20):
            assert rewards[p, idx[p]] == max(rewards[p, :n].tolist())
        cost = ns["forward_passes"](lengths, n)
        assert cost["reward_model"] == 20 * n
        assert cost["policy"] == sum(int(lengths[p, k]) + 1 for p in range(20) for k in range(n))
    # nested: the best of 16 is never worse than the best of 4
    best = {n: rewards[torch.arange(20), ns["best_of_n"](rewards, n)] for n in (1, 4, 16)}
    assert (best[16] >= best[4]).all() and (best[4] >= best[1]).all()


# ---------------------------------------------------------------- notebook 3: the critics against the data

def test_reference_critics_rank_the_preference_set_like_the_judge():
    from course.tinyworld import preferences as P

    ns = solution_namespace(SOLUTIONS / DAY / "03_constitutional_ai.py", {"critique", "label_pair"}, re=__import__("re"),
                            PLEASANTRIES=("hope this helps", "let me know", "thanks for asking", "good question",
                                          "have a nice day", "that is what i think"))
    for p in P.preferences("train"):
        pair = ns["label_pair"]([p.rejected, p.chosen])
        if p.kind == "wrong":          # the constitution says nothing about facts: no preference
            assert pair is None
        else:
            assert pair == (p.chosen, p.rejected)
