"""Day 2 nb4 (GRPO, RLOO, RLVR): the reference solutions against trl 1.16's real ``GRPOTrainer`` / ``RLOOTrainer`` on
batches they sample themselves, on prompts, rewards and options the notebook does not use; and, slow, the RLVR
lesson on seeds 1-3 (GRPO with the exact-match reward raises held-out addition exact match on each; seed 0 is
asserted by the notebook itself). Measured on seeds 0-5 (held-out addition SFT -> GRPO, 40 steps): at lr 3e-4
+0.20 +0.27 +0.04 -0.11 +0.24 +0.16 (seed 2 failed in CI, seed 3 fell); at 2e-4, the notebook's rate, +0.12 +0.23
+0.09 +0.11 +0.23 +0.20; at 5e-4 three seeds collapsed to ~0.
Full autograde + mutants: tests/test_days_autograde.py and ``course mutants day2 --notebook 04_grpo_rlvr``."""

from __future__ import annotations

import pytest
import torch

from course.authoring.reference import solution_namespace
from course.paths import SOLUTIONS, TINY_BASE

SRC = SOLUTIONS / "day2_rlhf" / "04_grpo_rlvr.py"
PRELUDE = "import copy\nimport time\nimport torch\n"
EXERCISES = {"group_advantages", "grpo_loss", "rloo_advantages", "given_rloo_loss"}
QUESTIONS = ["Compute 8 plus 5.", "Which word means the opposite of cold?", "How does a cat sound?"]


@pytest.fixture(scope="module")
def world():
    from course.loading import load_base, load_tokenizer
    from course.notebook import quiet

    quiet("tiny")
    ns = solution_namespace(SRC, EXERCISES, PRELUDE)
    base = load_base("tiny")
    g = torch.Generator().manual_seed(11)
    # a reference model different from the policy, so that the KL terms are not 0
    ns["other_weights"] = {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in base.state_dict().items()}
    ns["tokenizer"] = load_tokenizer("tiny")
    return ns


def batch_for(world, trainer, rewards, G, **config):
    from course.alignment import trl_group_batch

    return trl_group_batch(trainer, str(TINY_BASE), world["tokenizer"], QUESTIONS[:len(rewards) // G], rewards,
                           num_generations=G, max_completion_length=5, seed=3, **config)


# rewards with non-binary values, one all-equal (degenerate) group and different G than the notebook
CASES = [(torch.tensor([0.5, 2.0, -1.0, 3.0, 3.0, 3.0, 0.0, 1.0, 7.0]), 3),
         (torch.tensor([1.0, 1.0, 0.0, 1.0, 5.0, -2.0]), 2)]


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("case", [0, 1])
def test_group_advantages_equal_grpo_trainer(world, scale, case):
    rewards, G = CASES[case]
    _, batch = batch_for(world, "grpo", rewards, G, scale_rewards=scale)
    ours = world["group_advantages"](rewards, G, scale)
    assert torch.allclose(ours, batch["advantages"], atol=1e-6), (ours, batch["advantages"])


@pytest.mark.parametrize("loss_type,options", [
    ("grpo", dict(beta=0.1)),
    ("dapo", dict(beta=0.0, epsilon=0.1, epsilon_high=0.3)),
    ("bnpo", dict(beta=0.2, epsilon=0.3)),
    ("dr_grpo", dict(beta=0.05, epsilon_high=0.28)),
])
def test_grpo_loss_equals_grpo_trainer_loss_and_gradient(world, loss_type, options):
    """On trl's own sampled batch, with old log-probs moved off the policy (so the clip acts) and, for β ≠ 0, a
    different reference model (so the KL term acts): the same loss and the same gradient on every weight."""
    from course.alignment import completion_logprobs

    rewards, G = CASES[0]
    trainer, batch = batch_for(world, "grpo", rewards, G, loss_type=loss_type,
                               ref_state_dict=world["other_weights"] if options.get("beta") else None, **options)
    model = trainer.model
    logp = completion_logprobs(model, batch)
    g = torch.Generator().manual_seed(5)
    batch["old_per_token_logps"] = logp.detach() + 0.4 * torch.randn(logp.shape, generator=g)
    eps = options.get("epsilon", 0.2)
    ours = world["grpo_loss"](logp, batch["old_per_token_logps"], world["group_advantages"](rewards, G),
                              batch["completion_mask"], loss_type, epsilon=eps, epsilon_high=options.get("epsilon_high"),
                              beta=options.get("beta", 0.0), ref_logp=batch.get("ref_per_token_logps"),
                              max_completion_length=5)
    params = [p for p in model.parameters() if p.requires_grad]
    ours_grad = torch.autograd.grad(ours, params)
    theirs = trainer._compute_loss(model, batch)
    theirs_grad = torch.autograd.grad(theirs, params)
    assert torch.allclose(ours, theirs, atol=1e-6), (loss_type, ours.item(), theirs.item())
    for a, b in zip(ours_grad, theirs_grad):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (loss_type, (a - b).abs().max().item(), a.abs().max().item())
    if options.get("beta"):
        assert (batch["ref_per_token_logps"] - logp.detach()).abs().max() > 1e-3, "the KL term must be exercised"


@pytest.mark.parametrize("normalize", [False, True])
def test_rloo_advantages_and_loss_equal_rloo_trainer(world, normalize):
    """trl puts β·(summed k1 KL) into the reward; its reference here differs from the policy."""
    from course.alignment import completion_logprobs

    rewards, G = CASES[0]
    beta = 0.3
    trainer, batch = batch_for(world, "rloo", rewards, G, beta=beta, normalize_advantages=normalize,
                               ref_state_dict=world["other_weights"])
    mask = batch["completion_mask"]
    with torch.no_grad():
        ref_seq = (completion_logprobs(trainer.ref_model, batch) * mask).sum(1)
    kl = batch["old_logps"] - ref_seq
    assert kl.abs().max() > 1e-2, "the KL must be exercised"
    ours = world["rloo_advantages"](rewards, G, kl=kl, beta=beta, normalize=normalize)
    assert torch.allclose(ours, batch["advantages"], atol=1e-5), (ours, batch["advantages"])
    logp = completion_logprobs(trainer.model, batch)
    batch["old_logps"] = batch["old_logps"] + torch.tensor([0.5, -0.5, 0.05] * 3)      # ratios past both clip edges
    ours_loss = world["rloo_loss"](logp, batch["old_logps"], batch["advantages"], mask)
    assert torch.allclose(ours_loss, trainer._compute_loss(trainer.model, batch), atol=1e-6)


# ---------------------------------------------------------------- the RLVR lesson on seeds 1–2 (0: the notebook)

RUN_CELLS = EXERCISES | {"given_sft_policy", "given_rl_loop"}


@pytest.fixture(scope="module")
def rl_world():
    from course.notebook import setup

    profile = setup("tiny")
    return solution_namespace(SRC, RUN_CELLS, PRELUDE + (
        "from course.alignment import completion_logprobs, sample_groups\n"
        "from course.generation import chat_prompt, evaluate_exact_match\n"
        "from course.loading import load_base, load_tokenizer\n"
        "from course.notebook import progress\n"
        "from course.tinyworld import tasks\n"
        "from course.training import train_sft\n"
        "tokenizer = load_tokenizer(profile)\n"), profile=profile)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_grpo_with_a_verifiable_reward_raises_heldout_addition(rl_world, seed):
    """§5 on seeds 1-3: GRPO (trl's defaults: dapo, β = 0) on training sums raises held-out addition exact match,
    and the sample reward rises while the printed loss stays near 0. Seed 0 is the notebook's own run: its visible
    cell after §5's table asserts the same claims (the day autograde test fails if the reference raises in any cell)."""
    ns = rl_world
    sft = ns["sft_policy"](seed)
    before = ns["heldout_report"](sft)["addition"]
    policy, log = ns["rl_train"](sft, ns["rl_questions"], "grpo", seed=seed)
    after = ns["heldout_report"](policy)["addition"]
    first, last = sum(log["reward"][:5]) / 5, sum(log["reward"][-5:]) / 5
    print(f"seed {seed}: held-out addition {before:.3f} -> {after:.3f}; sample reward {first:.3f} -> {last:.3f}; "
          f"max |loss| {max(abs(x) for x in log['loss']):.4f}; mean grad norm {sum(log['grad_norm']) / len(log['loss']):.3f}")
    assert after > before, f"seed {seed}: held-out addition {before:.3f} -> {after:.3f}"
    assert last > first + 0.1, f"seed {seed}: sample reward {first:.3f} -> {last:.3f}"
    # a step whose groups all have equal rewards has a zero gradient (no signal); most steps do not
    assert max(abs(x) for x in log["loss"]) < 0.5, "the printed loss stays near 0 ..."
    assert sum(g > 0 for g in log["grad_norm"]) >= 0.8 * len(log["grad_norm"]), "... while the gradient is not 0"
