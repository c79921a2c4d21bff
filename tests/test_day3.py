"""Day 3 (DPO and ORPO): structure of the sources and planted bugs; the reference solutions against trl on fresh
batches, other β/λ and a different policy than the notebooks use; the toy derivation's claims.
Full autograde + mutants: tests/test_days_autograde.py."""

from __future__ import annotations

import copy

import pytest
import torch

from course.authoring.reference import solution_namespace
from course.paths import SOLUTIONS
from preference_support import perturbed_tiny_pairs

DAY = "day3_dpo_orpo"
SOURCES = sorted((SOLUTIONS / DAY).glob("[0-9][0-9]_*.py"))
DERIVATION, DPO, ORPO = (SOLUTIONS / DAY / f"{n}.py" for n in ("01_dpo_derivation", "02_dpo_loss", "03_orpo"))
PRELUDE = "import torch\nimport torch.nn.functional as F\n"




def test_four_notebooks():
    assert [s.stem for s in SOURCES] == ["01_dpo_derivation", "02_dpo_loss", "03_orpo", "04_dpo_family"]



# ---------------------------------------------------------------- notebook 1: the derivation's claims


def test_closed_form_optimum_beats_random_policies_and_implies_the_reward():
    ns = solution_namespace(DERIVATION, {"rlhf_objective", "optimal_policy", "implied_reward"}, PRELUDE)
    g = torch.Generator().manual_seed(7)
    pi_ref = torch.softmax(torch.randn(4, 6, generator=g, dtype=torch.float64), -1)
    r = 3 * torch.randn(4, 6, generator=g, dtype=torch.float64)
    for beta in (0.1, 1.0, 5.0):
        pi_star = ns["optimal_policy"](pi_ref, r, beta)
        J_star = ns["rlhf_objective"](pi_star, pi_ref, r, beta)
        rand = torch.distributions.Dirichlet(torch.ones(6, dtype=torch.float64)).sample((5000, 4))
        assert (ns["rlhf_objective"](rand, pi_ref, r, beta) <= J_star + 1e-12).all()
        diff = r - ns["implied_reward"](pi_star, pi_ref, beta)
        assert torch.allclose(diff, diff[:, :1].expand_as(diff), atol=1e-9)      # r up to a per-prompt constant


def test_reference_derivation_is_stable_at_the_extremes():
    """float32, r/β far beyond exp's range; zero-probability responses: finite, and equal to torch's own KL."""
    ns = solution_namespace(DERIVATION, {"rlhf_objective", "optimal_policy"}, PRELUDE)
    pi = ns["optimal_policy"](torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 0.0]]), 0.01)
    assert torch.isfinite(pi).all() and torch.allclose(pi, torch.tensor([[1.0, 0.0]]))   # the issue: [nan, 0]
    g = torch.Generator().manual_seed(8)
    ref = torch.softmax(torch.randn(5, 7, generator=g), -1)
    r = 100 * torch.randn(5, 7, generator=g)
    for beta in (1e-4, 0.01, 1.0, 1e4):
        got = ns["optimal_policy"](ref, r, beta)
        exact = torch.softmax(ref.double().log() + r.double() / beta, -1).float()
        assert torch.isfinite(got).all() and torch.allclose(got, exact, atol=1e-6), beta
    p = torch.softmax(torch.randn(5, 7, generator=g), -1)
    p[:, :3] = 0.0
    p = p / p.sum(-1, keepdim=True)
    for dtype in (torch.float32, torch.float64):
        pp, qq, rr = p.to(dtype), ref.to(dtype), r.to(dtype)
        kl = torch.distributions.kl_divergence(torch.distributions.Categorical(probs=pp),
                                               torch.distributions.Categorical(probs=qq))
        J = ns["rlhf_objective"](pp, qq, rr, 0.3)
        assert torch.isfinite(J).all() and torch.allclose(J, (pp * rr).sum(-1) - 0.3 * kl, atol=1e-4)


def test_deterministic_preferences_break_dpo_not_ipo():
    """nb1 §8: with always-won pairs DPO's gap keeps growing at any β; IPO's settles at (2/3)/(2β); a never-compared
    response is not pinned to π*."""
    import torch.nn.functional as F

    ns = solution_namespace(DERIVATION, {"given_fit_pairwise", "optimal_policy"}, PRELUDE)
    fit = ns["fit_pairwise"]
    ref = torch.full((1, 3), 1 / 3, dtype=torch.float64)
    wins = torch.zeros(1, 3, 3, dtype=torch.float64)
    wins[0, 0, 1] = wins[0, 1, 2] = wins[0, 0, 2] = 50.0
    gap = lambda p: (p[0, 0].log() - p[0, 1].log()).item()             # noqa: E731
    for b in (0.2, 2.0):                                                # other β than the notebook's
        dpo = [gap(fit(wins, ref, lambda d, b=b: -F.logsigmoid(b * d), n)) for n in (100, 1000)]
        ipo = [gap(fit(wins, ref, lambda d, b=b: (d - 1 / (2 * b)) ** 2, n)) for n in (100, 1000)]
        assert dpo[1] > dpo[0] + 1.0
        assert abs(ipo[1] - 2 / 3 / (2 * b)) < 1e-3 and abs(ipo[0] - ipo[1]) < 1e-2
    part = torch.zeros(1, 3, 3, dtype=torch.float64)
    part[0, 0, 1], part[0, 1, 0] = 70.0, 30.0
    p = fit(part, ref, lambda d: -F.logsigmoid(0.3 * d), 500)
    p_star = ns["optimal_policy"](ref, torch.tensor([[1.0, 0.0, 3.0]], dtype=torch.float64), 0.3)
    assert p[0, 2] < ref[0, 2] < p_star[0, 2]


# ---------------------------------------------------------------- notebooks 2 and 3: equal to trl

@pytest.fixture(scope="module")
def tiny():
    return perturbed_tiny_pairs(seed=0)     # a policy that differs from the reference (no training needed)


COMMON = dict(output_dir="/tmp/course_test_day3", per_device_eval_batch_size=5, bf16=False, use_cpu=True,
              report_to=[], save_strategy="no", disable_tqdm=True)


@pytest.mark.parametrize("beta", [0.1, pytest.param(0.5, marks=pytest.mark.slow)])
def test_reference_dpo_equals_trl(tiny, beta):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    tok, ref, policy, data = tiny
    policy, ref = copy.deepcopy(policy), copy.deepcopy(ref)      # trl patches forward in place
    ds = Dataset.from_list(data)
    trainer = DPOTrainer(model=policy, ref_model=ref, args=DPOConfig(beta=beta, **COMMON), train_dataset=ds,
                         eval_dataset=ds, processing_class=tok)
    expected = trainer.evaluate()
    batch = next(iter(trainer.get_eval_dataloader()))
    ns = solution_namespace(DPO, {"make_labels", "sequence_logprobs", "dpo_loss", "reward_metrics", "dpo_batch_loss"},
                            PRELUDE)
    mine = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
            "labels": batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)}
    with torch.no_grad():
        loss, metrics = ns["dpo_batch_loss"](policy, ref, mine, beta)
    assert abs(loss.item() - expected["eval_loss"]) < 1e-5
    assert abs(loss.item() - torch.log(torch.tensor(2.0)).item()) > 1e-3, "policy must differ from the reference"
    for k in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert abs(metrics[k] - expected["eval_" + k]) < 1e-5, k


def test_reference_batch_builder_matches_trl_collator(tiny):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    tok, ref, policy, data = tiny
    ds = Dataset.from_list(data)
    trainer = DPOTrainer(model=copy.deepcopy(policy), ref_model=copy.deepcopy(ref), args=DPOConfig(**COMMON),
                         train_dataset=ds, eval_dataset=ds, processing_class=tok)
    batch = next(iter(trainer.get_eval_dataloader()))
    from course.loading import load_preference_data

    ns = solution_namespace(DPO, {"given_build_batch", "make_labels"}, PRELUDE, tokenizer=tok,
                            prefs=load_preference_data())
    rows = [{"prompt": d["prompt"][0]["content"], "chosen": d["chosen"][0]["content"],
             "rejected": d["rejected"][0]["content"]} for d in data]
    mine = ns["build_batch"](rows)
    labels = ns["make_labels"](mine["input_ids"], mine["attention_mask"], mine["prompt_lengths"])
    assert torch.equal(mine["input_ids"], batch["input_ids"])
    assert torch.equal(labels, batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100))


@pytest.mark.parametrize("lam", [0.1, pytest.param(1.0, marks=pytest.mark.slow)])
def test_reference_orpo_equals_trl(tiny, lam):
    from datasets import Dataset
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    tok, _, policy, data = tiny
    model = copy.deepcopy(policy)
    ds = Dataset.from_list(data)
    trainer = ORPOTrainer(model=model, args=ORPOConfig(beta=lam, remove_unused_columns=False, **COMMON),
                          train_dataset=ds, eval_dataset=ds, processing_class=tok)
    batch = next(iter(trainer.get_eval_dataloader()))
    with torch.no_grad():
        expected_loss, expected = trainer.get_batch_loss_metrics(model, batch, train_eval="eval")
    ns = solution_namespace(ORPO, {"given_logprobs", "log_odds", "odds_ratio_loss", "orpo_loss", "orpo_batch_loss"},
                            PRELUDE)
    with torch.no_grad():
        loss, metrics = ns["orpo_batch_loss"](model, batch, lam, nll_over="prompt+response")
        paper_loss, paper_metrics = ns["orpo_batch_loss"](model, batch, lam)
        logits = model(input_ids=batch["chosen_input_ids"], attention_mask=batch["chosen_attention_mask"]).logits
    assert abs(loss.item() - expected_loss.item()) < 1e-5
    for k in ("nll_loss", "log_odds_ratio", "log_odds_chosen"):
        assert abs(metrics[k] - expected["eval_" + k]) < 1e-5, k
    # the paper's L_SFT: trl's loss with the NLL over the response tokens only
    lab = batch["chosen_labels"]
    resp_nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), lab[:, 1:].flatten(), ignore_index=-100)
    assert abs(paper_metrics["nll_loss"] - resp_nll.item()) < 1e-5
    assert abs(paper_loss.item() - (expected_loss.item() - expected["eval_nll_loss"] + resp_nll.item())) < 1e-5
    assert abs(resp_nll.item() - expected["eval_nll_loss"]) > 1e-2, "the two spans must differ on this batch"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_beta_sweep_adam_normalises_scale_and_saturation_leashes(seed):
    """nb2 §5 on seeds 1 and 2 (batch order): with Adam, β ×10 in the unsaturated regime leaves the held-out margin
    within 25 %, while a large β (σ(−βΔ) less than half as large: saturating) moves the policy less (margin, KL); with
    SGD β ×10 moves it > 2× more. Seed 0 is the notebook's own run: its cell after the sweep's table asserts the same
    claims on tiny (run by the day's autograde test)."""
    from course.loading import load_base, load_preference_data, load_tokenizer
    from course.notebook import quiet
    from course.profiles import get_profile

    quiet()
    tok, prefs = load_tokenizer("tiny"), load_preference_data()
    ns = solution_namespace(DPO, {"given_build_batch", "make_labels", "sequence_logprobs", "dpo_loss", "reward_metrics",
                                  "dpo_batch_loss", "given_beta_sweep"}, PRELUDE, tokenizer=tok, prefs=prefs,
                            load_base=load_base, profile=get_profile("tiny"), ref_model=load_base("tiny").eval())
    demo = ns["build_batch"]([prefs["test"][i] for i in range(60)])
    demo["labels"] = ns["make_labels"](demo["input_ids"], demo["attention_mask"], demo["prompt_lengths"])
    with torch.no_grad():
        ns["demo_logits"] = ns["ref_model"](input_ids=demo["input_ids"], attention_mask=demo["attention_mask"]).logits
    ns["demo"] = demo
    run = {(o, b): ns["heldout_drift"](ns["train_dpo"](b, o, seed=seed), b)
           for o, b in [("adam", 0.001), ("adam", 0.01), ("adam", 1.0), ("sgd", 0.001), ("sgd", 0.01)]}
    (kl_a, d_a, w_a), (_, d_b, _), (kl_big, d_big, w_big) = run["adam", 0.001], run["adam", 0.01], run["adam", 1.0]
    assert 0.75 < d_b / d_a < 1.25, (d_a, d_b)
    assert d_big < 0.6 * d_a and kl_big < kl_a and w_big < 0.5 * w_a, run
    assert run["sgd", 0.01][1] > 2 * run["sgd", 0.001][1] > 0, run


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_orpo_lambda_effect_on_seeds(seed):
    """nb3 §6 on seeds 1 and 2 (batch order; seed 0 is the notebook's own run, whose cell after the table asserts the
    same claims on tiny): SFT alone (λ = 0) widens the held-out chosen/rejected log-odds gap over the
    base by more than the odds-ratio term adds on top; λ = 0.1 and λ = 1 each add gap, by lowering the rejected
    responses' log-probability. Measured (load ~12): gap base 4.942; λ = 0 / 0.1 / 1: 7.984 / 8.307 / 8.513,
    8.137 / 8.722 / 8.649, 8.179 / 8.460 / 8.811 on seeds 0 / 1 / 2 — so not monotone in λ on seed 1."""
    from datasets import Dataset
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    from course.loading import load_base, load_preference_data, load_tokenizer
    from course.notebook import quiet
    from course.profiles import get_profile
    from course.training import use_cpu

    quiet()
    ns = solution_namespace(ORPO, {"given_trl_orpo_run", "given_logprobs", "log_odds", "odds_ratio_loss", "orpo_loss",
                                   "orpo_batch_loss", "given_lambda_runs"}, PRELUDE, tokenizer=load_tokenizer("tiny"),
                            prefs=load_preference_data(), load_base=load_base, profile=get_profile("tiny"),
                            Dataset=Dataset, ORPOConfig=ORPOConfig, ORPOTrainer=ORPOTrainer, use_cpu=use_cpu)
    base = ns["heldout_gap"](load_base("tiny"))
    runs = {lam: ns["heldout_gap"](ns["train_orpo"](lam, seed=seed)) for lam in (0.0, ns["LAM"], 1.0)}
    (_, rej0, gap0, _), (_, rej_s, gap_s, _), (_, rej1, gap1, _) = runs[0.0], runs[ns["LAM"]], runs[1.0]
    print(f"seed {seed}: base gap {base[2]:.3f}; λ=0 {gap0:.3f}, λ={ns['LAM']} {gap_s:.3f}, λ=1 {gap1:.3f}; "
          f"rejected logp {rej0:.3f} / {rej_s:.3f} / {rej1:.3f}")
    assert gap0 - base[2] > max(gap_s, gap1) - gap0, runs   # SFT does most of the separating
    assert gap0 < gap_s and gap0 < gap1, runs                # the odds-ratio term adds gap at both λ > 0
    assert rej_s < rej0 and rej1 < rej0, runs                # by pushing the rejected responses down
    # not asserted: more gap at λ = 1 than at λ = 0.1 (seed 1: 8.649 < 8.722; seeds 0 and 2: more)
