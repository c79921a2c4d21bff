"""Day 4 (SFT data, loss masking, the QLoRA lab): structure of the sources and planted bugs; the reference solutions
against the tokenizer and trl on other inputs; course.kbit; the lab script on 2 CPU processes and resumed after a
kill; the GPU benchmark's dry run. Full autograde + mutants: tests/test_days_autograde.py."""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys

import pytest
import torch

from course.authoring.reference import code_cells, solution_namespace
from course.paths import ROOT, SOLUTIONS

DAY = "day4_sft_qlora_lab"
SOURCES = sorted((SOLUTIONS / DAY).glob("[0-9][0-9]_*.py"))
TEMPLATES_NB, MASKING_NB, LAB_NB = (SOLUTIONS / DAY / f"{n}.py" for n in
                                    ("01_sft_data_and_templates", "02_loss_masking", "03_qlora_lab"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}




@pytest.fixture(scope="module")
def tok():
    from course.loading import load_tokenizer

    return load_tokenizer("tiny")


def test_three_notebooks():
    assert [s.stem for s in SOURCES] == ["01_sft_data_and_templates", "02_loss_masking", "03_qlora_lab"]



def random_conversation(rng):
    words = ["capital", "Peru", "opposite", "mouse", "2 plus 3", "meters", "Lima.", "is", "the", "?", "\n", "ok"]
    text = lambda: " ".join(rng.choice(words) for _ in range(rng.randint(1, 8)))  # noqa: E731
    msgs = [{"role": "system", "content": text()}] if rng.random() < 0.4 else []
    for i in range(rng.randint(1, 3)):
        msgs.append({"role": "user", "content": text()})
        if rng.random() < 0.8:
            msgs.append({"role": "assistant", "content": text()})
    return msgs


def test_reference_templates_equal_tokenizer_on_random_conversations(tok):
    from course.tinyworld.templates import ALPACA_PREAMBLE

    ns = solution_namespace(TEMPLATES_NB, {"render_chatml", "render_alpaca", "render_llama3"},
                            ALPACA_PREAMBLE=ALPACA_PREAMBLE)
    rng = random.Random(0)
    for _ in range(40):
        msgs = random_conversation(rng)
        gen = msgs[-1]["role"] != "assistant" and rng.random() < 0.7
        for name, render in [("chatml", ns["render_chatml"]), ("llama3", ns["render_llama3"]),
                             ("alpaca", lambda m, **k: ns["render_alpaca"](m, tok.eos_token, **k))]:
            want = tok.apply_chat_template(msgs, chat_template=name, tokenize=False, add_generation_prompt=gen)
            assert render(msgs, add_generation_prompt=gen) == want, (name, msgs)


def test_reference_labels_equal_trl_and_loss_equals_model(tok):
    from course.loading import load_base
    from course.tinyworld.tasks import examples
    from course.training import conversational

    import torch.nn.functional as F  # noqa: N812

    base = load_base("tiny")
    ns = solution_namespace(MASKING_NB, {"mask_labels", "sft_loss"}, "import torch\n", F=F)
    glb = {"conversational": conversational, "tok": tok, "base": base}
    exec("import tempfile\nimport torch\nfrom datasets import Dataset\nfrom trl import SFTConfig, SFTTrainer\n"
         "from course.training import use_cpu\n", glb)
    given = [s for _, s in code_cells(MASKING_NB) if s.startswith(("def tokenize_pairs", "def trl_labels"))]
    assert len(given) == 2, "the notebook's given tokenize_pairs and trl_labels cells"
    for c in given:
        exec(c, glb)
    ex = examples("heldout", families=["sound", "addition", "capital"])[::9][:7]
    ids, am, pl = glb["tokenize_pairs"](tok, ex)
    ref_ids, ref = glb["trl_labels"](ex)
    labels = ns["mask_labels"](ids, am, pl)
    assert torch.equal(ref_ids, ids) and torch.equal(labels, ref)
    with torch.no_grad():
        out = base(input_ids=ids, attention_mask=am, labels=labels)
    assert abs(ns["sft_loss"](out.logits, labels).item() - out.loss.item()) < 1e-5


def test_kbit_keeps_4bit_gradients_right_after_inference():
    """After a generate-like forward, the backward through 4-bit layers equals a fresh model's (course.kbit)."""
    from course.kbit import keep_training_layout, repacked_layers
    from course.loading import load_base, load_tokenizer

    tok = load_tokenizer("tiny")
    enc = tok(["The capital of France is Paris. The opposite of hot is cold."], return_tensors="pt")

    def emb_grad(m):
        e = m.model.embed_tokens.weight
        e.requires_grad_(True)
        m(**enc, labels=enc["input_ids"]).loss.backward()
        return e.grad.clone()

    fresh = emb_grad(load_base("tiny", quantize=True))
    fixed = load_base("tiny", quantize=True)
    assert keep_training_layout(fixed) == 28
    fixed.eval()
    with torch.no_grad():
        fixed(**enc)
    assert repacked_layers(fixed) == 0
    fixed.train()
    assert torch.allclose(emb_grad(fixed), fresh, atol=1e-6)
    broken = load_base("tiny", quantize=True)
    broken.eval()
    with torch.no_grad():
        broken(**enc)
    if repacked_layers(broken):                    # this CPU has the AVX-512 BF16 kernel: the trap is real here
        broken.train()
        rel = ((emb_grad(broken) - fresh).norm() / fresh.norm()).item()
        assert rel > 0.1, f"expected the repacked layout to corrupt the backward (relative error {rel:.3f})"
        keep_training_layout(broken)               # undoing the repack restores right gradients
        broken.model.embed_tokens.weight.grad = None
        rel_fixed = ((emb_grad(broken) - fresh).norm() / fresh.norm()).item()
        assert rel_fixed < 0.05, rel_fixed


def run_lab(*args, launcher=None, timeout=420):
    cmd = (launcher or [sys.executable]) + [str(ROOT / "scripts" / "qlora_lab.py"), "--profile", "tiny",
                                            "--threads", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=ENV)


def result_of(proc):
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"no RESULT line (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def lab_schedule():
    return solution_namespace(LAB_NB, {"schedule"}, "import math\n")["schedule"]


@pytest.mark.slow
def test_lab_two_cpu_processes_ddp(tmp_path):
    """accelerate launch, 2 processes on the CPU (gloo): data sharded, replicas equal, the step count halves."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(ROOT / "configs" / "accelerate" / "cpu_ddp.yaml")]
    from course.profiles import get_profile

    p = get_profile("tiny")
    proc = run_lab("--output-dir", str(tmp_path / "ddp"), "--max-train-examples", "16", "--no-eval", launcher=launcher)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = result_of(proc)
    schedule = lab_schedule()
    assert r["world_size"] == 2 and r["backend"] == "gloo" and r["replicas_equal"] is True
    want = schedule(16, p.per_device_batch_size, p.gradient_accumulation_steps, p.epochs, world_size=2)[0]
    assert want == schedule(16, p.per_device_batch_size, p.gradient_accumulation_steps, p.epochs)[0] // 2
    assert r["max_steps"] == r["global_step"] == want
    assert r["effective_batch"] == 2 * p.effective_batch_size
    assert (tmp_path / "ddp" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_lab_resumes_from_last_checkpoint_after_kill(tmp_path):
    out = tmp_path / "run"
    killed = run_lab("--output-dir", str(out), "--max-steps", "6", "--save-steps", "2", "--kill-after-step", "4",
                     "--no-eval")
    assert killed.returncode == -9, f"the run should die by SIGKILL after checkpoint 4; rc {killed.returncode}"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert not (out / "adapter").exists(), "a killed run never reaches the final save"
    resumed = result_of(run_lab("--output-dir", str(out), "--max-steps", "6", "--save-steps", "2", "--resume"))
    assert resumed["resumed_from"].endswith("checkpoint-4") and resumed["global_step"] == 6
    straight = result_of(run_lab("--output-dir", str(tmp_path / "straight"), "--max-steps", "6", "--no-eval"))
    for step in ("5", "6"):                        # same data order, optimizer and schedule state after resuming
        assert abs(resumed["losses"][step] - straight["losses"][step]) < 1e-4, (step, resumed["losses"], straight["losses"])


@pytest.mark.slow
def test_gpu_benchmark_dry_run(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "qlora_gpu.py"), "--dry-run", "--steps", "1",
                           "--workdir", str(tmp_path), "--out", str(out)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    from course.memory import lora_params, model_spec

    assert [row["seq_len"] for row in r["rows"]] == [32, 64]
    assert r["trainable"] == lora_params(model_spec(_tiny_fields()), 16), "LoRA r=16 on the seven projections"
    for row in r["rows"]:
        assert row["tokens_per_second"] > 0 and row["estimate_bytes"] > 0 and row["dolly_optimizer_steps"] == 892


def _tiny_fields():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import qlora_gpu

    return qlora_gpu.TINY_MISTRAL


def test_base_format_loss_same_on_both_padding_sides(tok):
    """Mistral's tokenizer pads on the left: the lab's hand-computed loss must mask the prompt per row either way,
    and equal the mean of per-row response-only losses computed without any padding."""
    from course.loading import load_base
    from course.tinyworld.tasks import examples
    from course.training import conversational

    base = load_base("tiny").eval()
    rows = conversational(examples("heldout", families=["capital", "addition", "units"])[::5][:8])
    want = []
    for r in rows:
        p = tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=False)
        ids = torch.tensor([tok(full, add_special_tokens=False)["input_ids"]])
        lab = ids.clone()
        lab[0, :len(tok(p, add_special_tokens=False)["input_ids"])] = -100
        with torch.no_grad():
            want.append(base(input_ids=ids, labels=lab).loss.item())
    losses = {}
    for side in ("right", "left"):
        t = copy.deepcopy(tok)
        t.padding_side = side
        ns = solution_namespace(LAB_NB, {"base_format_loss"}, "import torch\n", tok=t,
                                profile=type("P", (), {"max_seq_len": 128}))
        assert abs(ns["base_format_loss"](base, rows, batch_size=1) - sum(want) / len(want)) < 1e-5, side
        losses[side] = ns["base_format_loss"](base, rows, batch_size=4)      # rows of different lengths: padding
    assert abs(losses["left"] - losses["right"]) < 1e-4, losses


def _run_notebook(nb, seed: int, tail: str, skip=(), threads: int = 1) -> dict:
    """Run a notebook source's code cells (those containing a ``skip`` string left out) on tiny with this SEED and
    torch thread count; ``tail`` prints ``RESULT {json}`` from the notebook's names."""
    cells = [src for _, src in code_cells(nb) if not any(k in src for k in skip)]
    cells[0] = cells[0].replace("SEED = 0", f"SEED = {seed}")
    assert f"SEED = {seed}" in cells[0]
    script = "import matplotlib\nmatplotlib.use('Agg')\n" + "\n\n".join(cells) + "\nimport json\n" + tail + "\n"
    # PROFILE = "tiny" comes from the notebook's parameters cell; COURSE_PROFILE is NOT set, because it would also
    # turn the hidden checks' get_profile("a100") / get_profile("small") into tiny
    env = {k: v for k, v in ENV.items() if k != "COURSE_PROFILE"}
    env.update({"COURSE_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
                # idle OpenMP threads sleep instead of spinning: the 2-thread run shares the 2 cores with the other
                # pytest worker (in the full suite it took 206 s, the 1-thread seeds 24-27 s); same results
                "OMP_WAIT_POLICY": "PASSIVE"})
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env=env)
    return result_of(proc)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_qlora_lab_outcome_on_other_seeds(seed):
    """The lab's claims hold on seeds 1 and 2 too (seed 0 is the notebook itself, whose cells assert them)."""
    r = _run_notebook(LAB_NB, seed, 'print("RESULT " + json.dumps({"em_before": em_before, "em_after": em_after, '
                      '"formatted": formatted, "by_family": by_family, "first": first, "last": last}))',
                      skip=("fp_trainer",))
    assert r["em_before"] == 0.0
    assert r["em_after"] >= r["em_before"] + 0.5, r
    assert r["formatted"] >= 0.9, r
    for fam in ("capital", "antonym", "plural", "addition"):      # the families this run learns
        assert r["by_family"][fam] >= 0.6, (fam, r["by_family"])
    assert r["last"] < 0.6 * r["first"]


@pytest.mark.slow
@pytest.mark.parametrize("seed,threads", [(1, 1), (2, 1), (0, 2)])
def test_template_mismatch_ordering_on_seeds_and_threads(seed, threads):
    """Trained in ChatML, served in Alpaca it fails badly — on other seeds and at another thread count. Llama-3 is
    close to ChatML in structure and ties with it on seed 2 (measured: 0.489 vs 0.493), so it is reported, not ranked."""
    r = _run_notebook(TEMPLATES_NB, seed, 'print("RESULT " + json.dumps(served))', skip=("real = load_tokenizer",
                      "for add_bos in"), threads=threads)
    assert r["chatml"] > r["alpaca"] + 0.3, r          # the lesson: a far template fails (Llama-3 ties on seed 2, by design not asserted)


# ---------------------------------------------------------------- notebook 3: configuring QLoRA

LAB_PRELUDE = ("import torch\nfrom peft import LoraConfig, prepare_model_for_kbit_training\n"
               "from transformers import BitsAndBytesConfig\nfrom course.loading import DTYPES\n")


@pytest.mark.parametrize("name,overrides", [("tiny", {}), ("small", {}), ("a100", {}),
                                            ("tiny", {"compute_dtype": "bfloat16", "lora_r": 8, "lora_alpha": 5})])
def test_reference_qlora_configs_agree_with_course_loading_and_trl(name, overrides):
    """The lab's configs (the reference) quantize exactly as course.loading.bnb_config does for every profile
    (Day 5 reloads the base that way), and its trainer dict is accepted by trl's SFTConfig where the machine can
    (bf16 needs a GPU or use_cpu)."""
    import tempfile

    from trl import SFTConfig

    from course.loading import bnb_config
    from course.profiles import get_profile

    p = get_profile(name, **overrides)
    ns = solution_namespace(LAB_NB, {"qlora_configs"}, LAB_PRELUDE)
    quant, lora, trainer = ns["qlora_configs"](p, ["q_proj", "down_proj"])
    mine, course = quant.to_dict(), bnb_config(p).to_dict()
    assert {k: mine[k] for k in course if k.startswith("bnb_4bit") or k.startswith("load_in")} == \
        {k: course[k] for k in course if k.startswith("bnb_4bit") or k.startswith("load_in")}
    assert (lora.r, lora.lora_alpha) == (p.lora_r, p.lora_alpha)
    args = SFTConfig(output_dir=tempfile.mkdtemp(), **trainer, use_cpu=True, report_to=[], save_strategy="no")
    assert args.optim == p.optim and args.learning_rate == p.learning_rate and args.bf16 == (p.compute_dtype == "bfloat16")
    assert args.max_steps == (p.max_train_steps or -1) and args.get_warmup_steps(100) == 3
