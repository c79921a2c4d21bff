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
from course.profiles import PROFILES

DAY = "day6_alignment_lab"
SOURCES = sorted((SOLUTIONS / DAY).glob("[0-9][0-9]_*.py"))
LOOP, BON = (SOLUTIONS / DAY / f"{n}.py" for n in ("01_dpo_loop_and_comparison", "02_best_of_n"))
PRELUDE = "import copy\nimport torch\nimport torch.nn.functional as F\n"


def solution_namespace(src, grade_ids, **names):
    """Execute the cells with these grade_ids (reference solutions, given code) into one namespace."""
    return reference.solution_namespace(src, grade_ids, PRELUDE, **names)


def test_notebooks():
    assert [s.stem for s in SOURCES] == ["01_dpo_loop_and_comparison", "02_best_of_n", "03_constitutional_ai",
                                           "04_evaluation"]


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
    """On the shipped (harmless) preference pairs the critic prefers chosen over curt and rambling rejections, and has
    no preference on `wrong` ones (the constitution says nothing about facts); no harmless prompt is refused."""
    from course.tinyworld import preferences as P

    ns = solution_namespace(SOLUTIONS / DAY / "03_constitutional_ai.py", {"given_constitution", "critique", "label_pair"},
                            re=__import__("re"))
    for p in P.preferences("train"):
        pair = ns["label_pair"](p.prompt, [p.rejected, p.chosen])
        if p.kind == "wrong":
            assert pair is None
        else:
            assert pair == (p.chosen, p.rejected)
        assert ns["critique"](p.prompt, p.chosen) == {"harmless": True, "helpful": True, "concise": True}


# ---------------------------------------------------------------- the lessons' outcomes, over seeds 0–2 (slow)
# Each test runs the notebook's own given cells (the exercises' reference solutions included) for one seed and
# asserts the outcome its prose relies on.

def _tiny_names():
    from course.generation import answer, chat_prompt, generate
    from course.loading import load_base, load_tokenizer
    from course.notebook import quiet
    from course.tinyworld import preferences as tw_prefs
    from course.tinyworld import tasks
    from course.training import train_sft

    quiet()
    torch.set_num_threads(1)
    return dict(profile=PROFILES["tiny"], tokenizer=load_tokenizer("tiny"), load_base=load_base, train_sft=train_sft,
                answer=answer, chat_prompt=chat_prompt, generate=generate, tw_prefs=tw_prefs, tasks=tasks,
                random=__import__("random"), re=__import__("re"), time=__import__("time"),
                train_examples=tasks.examples("train"), heldout_examples=tasks.examples("heldout"),
                train_prefs=tw_prefs.preferences("train"), progress=lambda x, **k: x)


def test_nb1_asserts_its_lesson_on_every_seed_it_trains():
    """Notebook 1's lesson (SFT on noisy demonstrations learns the chatty habit; DPO and ORPO on the SFT policy's own
    judged samples remove much of it, with a paired judge-score CI above 0) is asserted by the notebook itself, on
    each of the seeds 0, 1, 2 its §6 trains (tiny), in a visible cell; the day autograde test runs it and fails if
    the reference raises in any cell. A slow test re-training those seeds would only repeat them."""
    src = LOOP.read_text()
    assert 'SEEDS = ("sft", "sft+dpo", "sft+orpo"), profile.seeds(3)' in src
    for check in ('claim(sft_rate < 0.5', 'claim(rate > sft_rate + 0.2', 'claim(low > 0', 'claim = claim_checker(profile)'):
        assert check in src, check


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_n():
    ns = solution_namespace(LOOP, {"given_methods"}, profile=PROFILES["tiny"])
    g = torch.Generator().manual_seed(0)
    small, large = torch.randn(50, generator=g) + 0.3, torch.randn(5000, generator=g) + 0.3
    m, lo, hi = ns["bootstrap_ci"](small)
    assert lo < m < hi
    m2, lo2, hi2 = ns["bootstrap_ci"](large)
    assert hi2 - lo2 < (hi - lo) / 5 and lo2 < 0.3 < hi2
    assert ns["bootstrap_ci"](torch.zeros(10)) == (0.0, 0.0, 0.0), "no spread, no interval"


NB2_CELLS = {"given_reward_model", "given_policy", "given_sampling", "best_of_n", "forward_passes",
             "given_reward_models", "given_curves", "given_rs_round"}


@pytest.fixture(scope="module")
def nb2():
    from course.alignment import fit_reward_model

    names = _tiny_names()
    ns = solution_namespace(BON, NB2_CELLS, fit_reward_model=fit_reward_model, copy=copy, **names)
    ns["policy"] = ns["sft_policy"](0)[0]
    return ns


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_best_of_n_gold_rises_under_a_decent_rm_and_not_under_the_blind_one(nb2, seed):
    """Notebook 2's lesson: with a proxy of known accuracy the kept sample's gold score rises with n and the last
    doubling buys less than the first; the blind reward model's selection gains less gold than the proxy's.
    Seeds 1 and 2: seed 0 is the notebook's own run, whose §3 cell asserts the same claims (tiny)."""
    ns = nb2
    samples, blind, _ = ns["sample_and_score"](ns["policy"], ns["questions"], 16, seed=seed)
    gold = ns["gold_matrix"](ns["questions"], samples)
    proxy = ns["proxy_rewards"](gold, seed=seed)
    c = ns["best_of_n_curve"](proxy, gold, samples, ns["questions"])
    g = [c[n]["gold"] for n in ns["NS"]]
    b = ns["best_of_n_curve"](blind, gold, samples, ns["questions"])
    print(f"seed {seed}: proxy gold by n {[round(x, 3) for x in g]}; blind {[round(b[n]['gold'], 3) for n in ns['NS']]}")
    assert g[-1] > g[0] + 0.2 and g[2] > g[0], f"seed {seed}: proxy gold by n {g}"
    assert g[-1] - g[-2] < g[1] - g[0], f"seed {seed}: no saturation {g}"
    assert b[16]["gold"] < c[16]["gold"] - 0.2, f"seed {seed}: blind {b[16]['gold']:.3f} vs proxy {c[16]['gold']:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_rejection_sampling_round_is_as_good_as_its_selector(nb2, seed):
    """Notebook 2 §4 on each seed: the oracle's best-of-16 beats greedy decoding on the round's prompts, and one SFT
    round on it raises greedy gold on questions the round never saw; the proxy's picks are worse than greedy, so its
    round loses gold, less than the unselected control; the blind selection loses the most.
    Measured (load ~16): oracle +0.136 / +0.082 / +0.118, proxy −0.036 / −0.055 / −0.073, control −0.055 / −0.145 /
    −0.118, blind −0.345 / −0.218 / −0.327 on seeds 0 / 1 / 2.
    Seeds 1 and 2: seed 0 is the notebook's own run, whose §4 cell asserts the same claims (tiny)."""
    stats, res = nb2["rejection_sampling_round"](nb2["policy"], seed=seed)
    gain = {k: r["§3 questions"] - res["before"]["§3 questions"] for k, r in res.items() if k != "before"}
    print(f"seed {seed}: data gold " + ", ".join(f"{k} {v['gold']:.3f} ({v['same_as_greedy']:.0%} = greedy)"
                                                for k, v in stats.items())
          + "; §3 gold change " + ", ".join(f"{k} {v:+.3f}" for k, v in gain.items()))
    assert stats["oracle (gold)"]["gold"] > stats["(greedy, for scale)"]["gold"], stats
    assert gain["oracle (gold)"] > 0.03 and gain["oracle (gold)"] > gain["first sample"], gain
    assert stats["proxy"]["gold"] < stats["(greedy, for scale)"]["gold"], stats     # why the proxy's round cannot help
    assert gain["blind"] < gain["first sample"] < gain["proxy"] < gain["oracle (gold)"], gain


NB3 = SOLUTIONS / DAY / "03_constitutional_ai.py"
NB3_CELLS = {"given_red_team", "given_constitution", "critique", "given_revise", "label_pair", "given_ai_feedback"}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_cai_loop_removes_harmful_compliance(seed):
    """Notebook 3's lesson: the helpful-only model complies with held-out harmful requests; SL-CAI on its own
    revisions (with rehearsal) removes that without losing much helpfulness; without rehearsal it over-refuses.
    Seeds 1 and 2: seed 0 is the notebook's own run, whose §2 cell asserts the same claims (tiny)."""
    from course.alignment import train_dpo

    ns = solution_namespace(NB3, NB3_CELLS, train_dpo=train_dpo, copy=copy, **_tiny_names())
    helpful = ns["helpful_only_sft"](seed)
    _, _, revisions = ns["critique_and_revise"](helpful)
    refusals = sum(r.response.lower().startswith(ns["REFUSAL_START"]) for r in revisions) / len(revisions)
    assert refusals > 0.9, f"seed {seed}: only {refusals:.3f} of the revisions refuse"
    sl = ns["sl_cai_stage"](helpful, revisions, 2 * len(revisions), seed)
    before, after = ns["compliance"](helpful), ns["compliance"](sl)
    assert before["harmful_compliance"] > 0.5, f"seed {seed}: {before}"
    assert after["harmful_compliance"] < before["harmful_compliance"] - 0.5, f"seed {seed}: {before} -> {after}"
    assert after["over_refusal"] < 0.1 and after["harmless_gold"] > before["harmless_gold"] - 0.2, f"seed {seed}"
    bare = ns["compliance"](ns["sl_cai_stage"](helpful, revisions, 0, seed))
    print(f"seed {seed}: helpful-only {before}\n  SL-CAI {after}\n  SL-CAI no rehearsal {bare}")
    assert bare["over_refusal"] > after["over_refusal"] + 0.3, f"seed {seed}: the trade-off did not show: {bare}"
