"""The 7-day plan, following the seed's cadence (Mon LoRA/QLoRA papers → Sun mock interview)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Day:
    number: int
    weekday: str
    folder: str           # solutions/<folder>, lessons/<folder>, the nbgrader assignment name
    title: str
    reading: str
    teaches: str


DAYS: list[Day] = [
    Day(1, "Mon", "day1_lora_qlora", "LoRA math and QLoRA numbers",
        "Hu et al. 2021 (LoRA); Dettmers et al. 2023 (QLoRA)",
        "LoRA's math and parameter counts, LoRA from scratch checked against peft, NF4 from scratch checked "
        "against bitsandbytes, double quantization, a memory calculator, the PEFT family (prompt and prefix "
        "tuning, (IA)³, DoRA, rsLoRA, PiSSA, LoRA+) each checked against peft"),
    Day(2, "Tue", "day2_rlhf", "RLHF: reward model, PPO with a KL penalty, reward hacking, GRPO and RLVR",
        "Ouyang et al. 2022 (InstructGPT); Schulman et al. 2017 (PPO); Christiano et al. 2017; Stiennon et al. 2020; "
        "Shao et al. 2024 (DeepSeekMath, GRPO); Ahmadian et al. 2024 (RLOO)",
        "a Bradley–Terry reward model, PPO's pieces (log-probs, KL, GAE, clipped surrogate), a toy RLHF loop, "
        "reward hacking and the KL coefficient, why RLHF is expensive; GRPO's group advantages and loss types and "
        "RLOO's baseline checked against trl, RL with a verifiable reward beside expert iteration"),
    Day(3, "Wed", "day3_dpo_orpo", "DPO, its family and ORPO, derived and verified",
        "Rafailov et al. 2023 (DPO); Hong et al. 2024 (ORPO); Azar et al. 2023 (IPO); Meng et al. 2024 (SimPO); "
        "Ethayarajh et al. 2024 (KTO); Chowdhury et al. 2024 (Robust DPO); Mitchell 2023 (cDPO)",
        "the DPO derivation checked with numbers, sequence log-probs with masking, DPO and ORPO losses equal to trl; "
        "the DPO family (IPO, SimPO, KTO, robust and conservative DPO) equal to trl, each run to show what it fixes"),
    Day(4, "Thu", "day4_sft_qlora_lab", "Lab 02: SFT data, loss masking, the QLoRA lab",
        "Seed §2 and §5 (Lab 02)",
        "chat templates and the mismatch bug, label masking equal to trl, QLoRA with SFTTrainer (tiny on CPU, "
        "Mistral-7B + Dolly-15k on an A100)"),
    Day(5, "Fri", "day5_adapters_serving", "Adapters in use: inference, merging, serving many",
        "Seed §5.1 and §6; S-LoRA (Sheng et al. 2023); Punica (Chen et al. 2023); TIES (Yadav et al. 2023); "
        "DARE (Yu et al. 2024)",
        "inference with an adapter, merging and its tolerance, hot-swapping, mixed-adapter batches, an adapter server, "
        "merging task adapters (linear, TIES, DARE) from scratch equal to peft, merged vs individual adapters measured"),
    Day(6, "Sat", "day6_alignment_lab", "SFT vs SFT+DPO vs ORPO, best-of-n, constitutional AI",
        "Bai et al. 2022 (Constitutional AI); Lambert et al. 2024 (RewardBench); Zheng et al. 2023 "
        "(LLM-as-a-judge); Dubois et al. 2024 (Length-controlled AlpacaEval)",
        "DPO from scratch against trl, a three-way comparison over seeds, rejection sampling, a small CAI loop, "
        "evaluation: preference accuracy by category, judge position/length biases corrected, contamination"),
    Day(7, "Sun", "day7_interview", "Mock interview and when to fine-tune",
        "Seed §6 and §7",
        "the interview bank with drills and spaced repetition, and the fine-tune vs RAG vs prompt decision lesson"),
]


def get_day(spec: str | int) -> Day:
    """Find a day by number (3), 'day3', or its folder name."""
    s = str(spec).lower().removeprefix("day").split("_")[0]
    for d in DAYS:
        if s == str(d.number) or str(spec) == d.folder:
            return d
    raise KeyError(f"no day {spec!r}; days are 1–7 (e.g. 'day1' or '1')")
