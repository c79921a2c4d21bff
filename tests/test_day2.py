"""Day 2 (RLHF): structure of the sources and planted bugs; the reference reward-model loss equal to trl's
RewardTrainer on other pairs; the toy RLHF loop's reward improvement and the reward-hacking demonstration across
seeds 1–2 (seed 0 is asserted by the notebooks themselves). Full autograde + mutants: tests/test_days_autograde.py."""

from __future__ import annotations


import pytest
import torch

from course.authoring.reference import cell_source, solution_namespace
from course.paths import SOLUTIONS

DAY = "day2_rlhf"
SOURCES = sorted((SOLUTIONS / DAY).glob("[0-9][0-9]_*.py"))
RM_SRC, PPO_SRC, COST_SRC = (SOLUTIONS / DAY / f"{n}.py" for n in
                             ("01_reward_model", "02_ppo_and_reward_hacking", "03_rlhf_cost"))
PRELUDE = ("import contextlib\nimport io\nimport math\nimport torch\nimport torch.nn as nn\n"
           "import torch.nn.functional as F\n")




def test_four_notebooks():
    # 04_grpo_rlvr (GRPO, RLOO, RLVR) is tested in tests/test_grpo.py
    assert [s.stem for s in SOURCES] == ["01_reward_model", "02_ppo_and_reward_hacking", "03_rlhf_cost", "04_grpo_rlvr"]



# ---------------------------------------------------------------- notebook 1: equal to trl on other pairs


def test_reference_reward_loss_equals_trl_reward_trainer():
    from datasets import Dataset
    from transformers import LlamaForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from course.loading import load_base, load_preference_data, load_tokenizer
    from course.notebook import quiet
    from course.paths import TINY_BASE

    quiet()
    tok = load_tokenizer("tiny")
    ns = solution_namespace(RM_SRC, {"last_non_pad_index", "bradley_terry_loss", "reward_batch_loss"}, PRELUDE)
    ns["tokenizer"] = tok
    exec(cell_source(RM_SRC, "given_reward_model").split("torch.manual_seed(0)")[0], ns)
    torch.manual_seed(3)
    rm = ns["RewardModel"](load_base("tiny"), tok.pad_token_id)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():                              # weights the notebook never has: a perturbed trunk
        for p in rm.backbone.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    rm.eval()
    rows = [load_preference_data()["train"][i] for i in (5, 77, 78, 79, 300, 650)]
    data = [{"prompt": [{"role": "user", "content": r["prompt"]}], "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows]
    trl_model = LlamaForSequenceClassification.from_pretrained(str(TINY_BASE), num_labels=1)
    trl_model.load_state_dict({k.replace("backbone.", "model."): v for k, v in rm.state_dict().items()})
    ds = Dataset.from_list(data)
    trainer = RewardTrainer(model=trl_model, processing_class=tok, train_dataset=ds, eval_dataset=ds,
                            args=RewardConfig(output_dir="/tmp/course_test_day2_rm", per_device_eval_batch_size=len(rows),
                                              bf16=False, use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True))
    expected = trainer.evaluate()
    batch = next(iter(trainer.get_eval_dataloader()))
    with torch.no_grad():
        loss, acc = ns["reward_batch_loss"](rm, batch)
    assert abs(loss.item() - expected["eval_loss"]) < 1e-5
    assert abs(acc - expected["eval_accuracy"]) < 1e-6
    assert abs(loss.item() - 0.6931) > 1e-3, "rewards must differ between chosen and rejected"


@pytest.fixture(scope="module")
def rm_world():
    """Notebook 1's reward-model cells (definitions only), on the tiny profile, one thread."""
    from course.loading import load_base, load_preference_data, load_tokenizer
    from course.notebook import quiet
    from course.profiles import get_profile
    from course.tinyworld.preferences import off_topic_preferences
    from course.tinyworld.tasks import examples
    from course.training import train_sft

    quiet()
    torch.set_num_threads(1)
    prefs = load_preference_data()
    ns = solution_namespace(RM_SRC, {"last_non_pad_index", "bradley_terry_loss", "reward_batch_loss"}, PRELUDE,
                            profile=get_profile("tiny"), tokenizer=load_tokenizer("tiny"), load_base=load_base, prefs=prefs,
                            train_sft=train_sft, examples=examples, SFT_STEPS=30,
                            off_topic={s: [p.as_dict() for p in off_topic_preferences(s)] for s in ("train", "heldout")})
    exec(cell_source(RM_SRC, "given_reward_model").split("torch.manual_seed(0)")[0], ns)
    exec(cell_source(RM_SRC, "given_train_reward_model").split("acc_curve, loss_curve")[0], ns)
    exec(cell_source(RM_SRC, "given_sft_likelihood").split("sft = sft_model()")[0], ns)
    exec(cell_source(RM_SRC, "given_likelihood_reward_model").split("competent_rm =")[0], ns)
    return ns


def test_off_topic_pairs_answer_another_question():
    from course.tinyworld.preferences import judge, off_topic_preferences

    pairs = off_topic_preferences("heldout")
    assert pairs == off_topic_preferences("heldout"), "deterministic"
    for p in pairs:
        assert p.rejected != p.chosen and judge(p.category, p.key, p.chosen)["correct"]
        assert not judge(p.category, p.key, p.rejected)["correct"]
    same_family = sum(judge(p.category, p.key, p.rejected)["complete"] for p in pairs) / len(pairs)
    assert 0.5 < same_family < 1, f"mostly another item of the same family, sometimes another family: {same_family}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_competent_reward_model_knows_the_facts_the_trunk_model_misses(rm_world, seed):
    """The lesson of notebook 1 §4–5 on seeds 1 and 2: the trunk-only reward model is near chance on wrong-fact pairs;
    the likelihood reward model on the SFT model is well above it, and good on off-topic answers. Seed 0 is the
    notebook's own run: its visible cell after §5 asserts the same claims."""
    ns = rm_world
    rows, test = ns["train_rows"], ns["test_rows"]
    torch.manual_seed(seed)
    trunk = ns["RewardModel"](ns["load_base"]("tiny"), ns["tokenizer"].pad_token_id)
    ns["train_reward_model"](trunk, rows, ns["valid_rows"], steps=40, seed=seed)
    with torch.no_grad():
        trunk_acc = ns["accuracy_by_kind"](*trunk.eval()(**ns["pair_batch"](test)).chunk(2), test)
    rm = ns["LikelihoodRewardModel"](ns["sft_model"](seed=seed), ns["tokenizer"])
    rm.fit(rows, loss_fn=ns["bradley_terry_loss"])
    prompts = [r["prompt"] for r in test]
    with torch.no_grad():
        acc = ns["accuracy_by_kind"](rm(prompts, [r["chosen"] for r in test]), rm(prompts, [r["rejected"] for r in test]), test)
    assert trunk_acc["wrong"] < 0.65 and trunk_acc["curt"] > 0.9, f"seed {seed}: trunk {trunk_acc}"
    assert acc["wrong"] > 0.8 and acc["wrong"] > trunk_acc["wrong"] + 0.2, f"seed {seed}: {acc} vs trunk {trunk_acc}"
    assert acc["off_topic"] > 0.7 and acc["all"] > trunk_acc["all"], f"seed {seed}: {acc} vs trunk {trunk_acc}"


# ---------------------------------------------------------------- notebook 2: PPO pieces on more cases


def test_reference_gae_matches_the_explicit_sum():
    """A_t = Σ_k (γλ)^k δ_(t+k), written out, on random masked batches."""
    ns = solution_namespace(PPO_SRC, {"gae_advantages"}, PRELUDE)
    g = torch.Generator().manual_seed(5)
    r, v = torch.randn(4, 7, generator=g), torch.randn(4, 7, generator=g)
    lengths = [7, 3, 1, 5]
    m = (torch.arange(7) < torch.tensor(lengths).unsqueeze(1)).float()
    gamma, lam = 0.9, 0.7
    adv, ret = ns["gae_advantages"](r, v, m, gamma, lam, normalise=False)
    for b, n in enumerate(lengths):
        vv = torch.cat([v[b, :n], torch.zeros(1)])
        delta = r[b, :n] + gamma * vv[1:] - vv[:-1]
        for t in range(n):
            expected = sum((gamma * lam) ** k * delta[t + k] for k in range(n - t))
            assert abs(adv[b, t] - expected) < 1e-5
        assert torch.allclose(ret[b, :n], adv[b, :n] + v[b, :n], atol=1e-6)
        assert (adv[b, n:] == 0).all()


def test_reference_clipped_surrogate_gradient_is_zero_exactly_where_clipped():
    ns = solution_namespace(PPO_SRC, {"clipped_surrogate_loss"}, PRELUDE)
    g = torch.Generator().manual_seed(6)
    old = torch.randn(3, 50, generator=g)
    logp = (old + 0.5 * torch.randn(3, 50, generator=g)).requires_grad_(True)
    adv = torch.randn(3, 50, generator=g)
    ns["clipped_surrogate_loss"](logp, old, adv, torch.ones(3, 50), 0.2).backward()
    ratio = (logp - old).exp().detach()
    clipped = ((ratio > 1.2) & (adv > 0)) | ((ratio < 0.8) & (adv < 0))
    assert clipped.any() and (~clipped).any()
    assert (logp.grad[clipped] == 0).all() and (logp.grad[~clipped] != 0).all()


# ---------------------------------------------------------------- notebook 2: the loop and the hack, seeds 1–2 (seed 0: the notebook asserts)

LOOP_CELLS = {"response_logprobs", "kl_estimate", "kl_penalised_rewards", "gae_advantages", "clipped_surrogate_loss"}
_WORLDS: dict = {}


def rlhf_world(seed):
    """Notebook 2's given cells (definitions only) around an SFT policy and competent reward model built with
    ``seed``, cached per seed (one thread, tiny profile)."""
    if seed in _WORLDS:
        return _WORLDS[seed]
    from course.loading import load_base, load_preference_data, load_tokenizer
    from course.profiles import get_profile
    from course.notebook import progress, quiet
    from course.rlhf import LikelihoodRewardModel, sft_policy
    from course.tinyworld.preferences import judge, off_topic_preferences
    from course.tinyworld.tasks import examples

    quiet()
    torch.set_num_threads(1)
    ns = solution_namespace(PPO_SRC, LOOP_CELLS, PRELUDE, profile=get_profile("tiny"), tokenizer=load_tokenizer("tiny"),
                            load_base=load_base, load_preference_data=load_preference_data, examples=examples,
                            judge=judge, off_topic_preferences=off_topic_preferences, progress=progress,
                            LikelihoodRewardModel=LikelihoodRewardModel, sft_policy=sft_policy)
    exec(cell_source(PPO_SRC, "given_models").split("sft = sft_policy(")[0], ns)
    ns["sft"] = sft_policy("tiny", ns["tokenizer"], ns["task_examples"], steps=30, seed=seed)
    ns["reward_model"] = LikelihoodRewardModel(ns["sft"], ns["tokenizer"])
    ns["reward_model"].fit(ns["preference_rows"])
    exec(cell_source(PPO_SRC, "given_rollout").split("torch.manual_seed(0)")[0], ns)
    exec(cell_source(PPO_SRC, "given_evaluation"), ns)
    exec(cell_source(PPO_SRC, "given_rlhf_loop").split("_, rm_reports = rlhf(")[0], ns)
    exec(cell_source(PPO_SRC, "given_flawed_reward_model").split("row = load_preference_data()")[0], ns)
    _WORLDS[seed] = ns
    return ns


@pytest.mark.slow
@pytest.mark.xdist_group("day2_rlhf")
@pytest.mark.parametrize("seed", [1, 2])
def test_ppo_under_the_competent_reward_model_raises_the_heldout_judge(seed):
    """Notebook 2 §6 on seeds 1 and 2: PPO on notebook 1's competent reward model raises the rule judge's score on the
    fixed held-out set (the policy never sees the judge), while its reward-model score rises and it moves off the
    reference. Seed 0 is the notebook's own run: its visible cell after §6 asserts the same three claims (the day
    autograde test fails if the reference raises in any cell)."""
    ns = rlhf_world(seed)
    _, reports = ns["rlhf"](ns["sft"], ns["learned_reward"], seed=seed, eval_every=8)
    (_, first), (_, last) = reports[0], reports[-1]
    assert last["judge"] > first["judge"] + 0.05, f"seed {seed}: held-out judge {first['judge']:.3f} -> {last['judge']:.3f}"
    assert last["score"] > first["score"] + 0.3, f"seed {seed}: RM score {first['score']:.3f} -> {last['score']:.3f}"
    assert last["kl"] > 0.3, f"seed {seed}: KL {last['kl']:.3f}"


@pytest.mark.slow
@pytest.mark.xdist_group("day2_rlhf")
@pytest.mark.parametrize("seed", [1, 2])
def test_reward_hacking_lowers_the_judge_through_length_and_beta_leashes_it(seed):
    """Notebook 2 §7 on seeds 1 and 2: under the length-biased reward model with a weak leash the response length
    rises and the held-out judge falls; the strong leash keeps the KL smaller and loses less judge. Seed 0 is the
    notebook's own run: its visible cell after §7 asserts the same five claims."""
    ns = rlhf_world(seed)
    runs = {b: ns["rlhf"](ns["sft"], ns["flawed_reward"], beta=b, max_new_tokens=12, seed=seed, eval_every=8,
                          eval_reward=ns["biased_reward_model"])[1] for b in (0.01, 0.3)}
    (_, f0), (_, f1) = runs[0.01][0], runs[0.01][-1]
    (_, l0), (_, l1) = runs[0.3][0], runs[0.3][-1]
    print(f"seed {seed}: β=0.01 biased reward (held-out) {f0['score']:.3f} -> {f1['score']:.3f}, judge "
          f"{f0['judge']:.3f} -> {f1['judge']:.3f}, tokens {f0['tokens']:.2f} -> {f1['tokens']:.2f}, KL {f1['kl']:.2f};"
          f" β=0.3 judge {l0['judge']:.3f} -> {l1['judge']:.3f}, tokens {l1['tokens']:.2f}, KL {l1['kl']:.2f}")
    assert f1["tokens"] > f0["tokens"] + 0.5, f"seed {seed}: tokens {f0['tokens']:.2f} -> {f1['tokens']:.2f}"
    assert f1["judge"] < f0["judge"] - 0.1, f"seed {seed}: judge {f0['judge']:.3f} -> {f1['judge']:.3f}"
    assert l1["kl"] < f1["kl"], f"seed {seed}: KL β=0.3 {l1['kl']:.2f} vs β=0.01 {f1['kl']:.2f}"
    assert l0["judge"] - l1["judge"] < f0["judge"] - f1["judge"], \
        f"seed {seed}: judge drop β=0.3 {l0['judge'] - l1['judge']:.3f} vs β=0.01 {f0['judge'] - f1['judge']:.3f}"
    assert l1["tokens"] < f1["tokens"], f"seed {seed}: tokens β=0.3 {l1['tokens']:.2f} vs β=0.01 {f1['tokens']:.2f}"


# ---------------------------------------------------------------- notebook 3: the cost counts


def test_reference_cost_counts_on_other_models():
    from course.memory import count_params, estimate, model_spec, weight_bytes

    ns = solution_namespace(COST_SRC, {"rlhf_memory", "ppo_passes"}, estimate=estimate, weight_bytes=weight_bytes)
    spec = model_spec("llama-2-70b")
    mem = ns["rlhf_memory"](spec, optimizer="adamw_8bit", seq_len=256, batch=2)
    sft = estimate(spec, method="full", optimizer="adamw_8bit", seq_len=256, batch=2).total
    assert mem["total"] == 2 * sft + 4 * count_params(spec)
    for epochs in range(1, 6):
        assert ns["cost_vs_sft"](ns["ppo_passes"](epochs)) == pytest.approx((5 + 6 * epochs) / 3)
    assert ns["cost_vs_sft"](ns["ppo_passes"](1)) > 3.5, "one epoch of PPO already costs close to 4 SFT steps"
