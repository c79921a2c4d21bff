"""The interview bank: its content, its schema errors, and the grading of every question type."""

from __future__ import annotations

import difflib
import textwrap
from pathlib import Path

import pytest
import yaml

from course import paths
from course.days import DAYS
from course.quiz.grading import (AnswerFormatError, grade, grade_key_points, parse_key_points, parse_number,
                                 suggested_rating)
from course.quiz.loader import BankError, evaluate_compute, load_bank, load_file
from course.quiz.schema import Question

# The seed's §7 "Common interview questions", as written there.
SEED_12 = [
    "Walk through SFT, RLHF, and DPO. When would you use each?",
    "Derive LoRA's math. Explain r and α.",
    "What's NF4 and why is it better than INT4?",
    "Why does QLoRA let you fine-tune 70B on one GPU?",
    "Compare PPO's KL penalty and DPO's reference model — they're related, how?",
    "What's reward hacking and how do you mitigate it?",
    "When would you fine-tune instead of RAG?",
    "How do you mask labels for SFT so the model doesn't train on the prompt?",
    "Sketch the Bradley-Terry reward model loss.",
    "What's the role of α / r scaling in LoRA at inference?",
    "How would you serve 100 different LoRA adapters in production?",
    "Why is constitutional AI scalable in a way RLHF isn't?",
]

# The seed's topic list (issue 10): every one must have questions.
SEED_TOPICS = ["sft_data", "templates", "hyperparameters", "lora", "lora_rank_alpha", "qlora", "peft_other",
               "memory", "rlhf", "dpo", "orpo", "constitutional_ai", "rejection_sampling", "when_to_finetune",
               "serving_adapters"]
# Where a numeric answer may come from: the memory calculator, the quiz helpers, and the worked examples kept
# outside the package (quizzes/worked_examples.py) because they are also lesson answers.
CALCULATORS = ("course.memory.", "course.quiz.calc.", "worked_examples.")


@pytest.fixture(scope="module")
def bank():
    return load_bank()


# ---- the bank -----------------------------------------------------------------------------------------
def test_bank_size_and_topics(bank):
    assert len(bank) >= 150
    for t in SEED_TOPICS:
        assert len(bank.select([t])) >= 8, f"topic {t} is thin"
    assert {q.type for q in bank.questions} == {"mcq", "multi", "numeric", "short", "open"}
    assert {q.difficulty for q in bank.questions} == {1, 2, 3}


def test_one_file_per_topic():
    for f in paths.QUIZZES.glob("*.yaml"):
        data = yaml.safe_load(f.read_text())
        assert {q["topic"] for q in data} == {f.stem}


def test_seed_twelve_questions_present_with_full_answers(bank):
    tagged = bank.select(tags=["seed-12"])
    assert len(tagged) == 12
    for s in SEED_12:
        best = max(tagged, key=lambda q: difflib.SequenceMatcher(None, q.prompt.lower(), s.lower()).ratio())
        ratio = difflib.SequenceMatcher(None, best.prompt.lower(), s.lower()).ratio()
        assert ratio > 0.85, f"seed question not found near-verbatim: {s!r} (closest {best.prompt!r})"
        assert best.type == "open" and len(best.key_points) >= 3 and len(best.model_answer) > 400, best.id


def test_every_day_and_reference_is_real(bank):
    folders = {d.folder for d in DAYS}
    for q in bank.questions:
        for r in q.references:
            if r.startswith("Lesson"):
                assert r.split()[1] in folders, f"{q.id}: unknown lesson {r!r}"


def test_numeric_answers_come_from_calculators(bank):
    numeric = bank.select(types=["numeric"])
    assert len(numeric) >= 25
    raw = load_bank(compute=False)
    for q in numeric:
        assert q.compute.fn.startswith(CALCULATORS), f"{q.id}: {q.compute.fn} is not a course calculator"
        assert q.value == evaluate_compute(q.compute)
        assert raw.by_id[q.id].value is None                       # nothing typed in YAML
        assert "{value}" in raw.by_id[q.id].model_answer, f"{q.id}: the model answer must show the computed value"
        assert "{value}" not in q.model_answer


def test_seed_loose_figures_are_taught_exactly(bank):
    assert bank.by_id["mem-mistral-lora-r16"].value == 41_943_040
    assert bank.by_id["mem-mistral-adapter-mib"].value == pytest.approx(80.0)
    assert bank.by_id["mem-70b-adam-moments"].value == pytest.approx(560.0)
    assert bank.by_id["ql-double-quant-bits"].value == pytest.approx(0.126953125)
    assert bank.by_id["lora-compression-4096"].value == pytest.approx(128.0)


def test_mcq_answers_are_letters_of_choices(bank):
    for q in bank.select(types=["mcq", "multi"]):
        for a in q.answer_letters:
            assert "ABCDEF".index(a) < len(q.choices)


# ---- schema errors name file, line and field ------------------------------------------------------------
GOOD = """\
- id: t-one
  topic: {topic}
  difficulty: 1
  type: mcq
  prompt: Which letter is right here?
  choices: [first, second]
  answer: B
  model_answer: The second choice is right, by construction.
  key_points: [second]
  references: [Lesson day1_lora_qlora]
  day: 1
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def _errors(path: Path) -> list:
    qs, errs = load_file(path)
    return errs


def test_good_file_loads(tmp_path):
    qs, errs = load_file(_write(tmp_path, "x.yaml", GOOD.format(topic="x")))
    assert not errs and qs[0].id == "t-one" and qs[0].source.endswith("x.yaml:1")


def test_malformed_yaml_names_line(tmp_path):
    p = _write(tmp_path, "x.yaml", GOOD.format(topic="x") + "- id: [unclosed\n  topic: x\n")
    (e,) = _errors(p)
    assert "x.yaml" in e.file and e.line in (12, 13, 14) and "malformed YAML" in str(e)


@pytest.mark.parametrize("old,new,field,line", [
    ("difficulty: 1", "difficulty: 5", "difficulty", 3),
    ("answer: B", "answer: E", "answer", None),
    ("type: mcq", "type: essay", "type", 4),
    ("day: 1", "day: 9", "day", 11),
    ("references: [Lesson day1_lora_qlora]", "references: [some blog]", "references", 10),
    ("  day: 1\n", "  day: 1\n  colour: red\n", "colour", 12),
])
def test_schema_violation_names_field_and_line(tmp_path, old, new, field, line):
    p = _write(tmp_path, "x.yaml", GOOD.format(topic="x").replace(old, new))
    (e,) = _errors(p)
    assert e.field == field and e.qid == "t-one", str(e)
    if line:
        assert e.line == line, str(e)
    assert str(e).startswith(f"{e.file}:{e.line}: question 't-one' field '{field}'")


def test_numeric_needs_compute_and_rejects_typed_value(tmp_path):
    base = GOOD.format(topic="x").replace("type: mcq", "type: numeric").replace(
        "  choices: [first, second]\n  answer: B\n", "  unit: parameters\n")
    (e,) = _errors(_write(tmp_path, "x.yaml", base))
    assert e.field == "compute"
    typed = base.replace("  unit: parameters\n", "  unit: parameters\n  value: 131072\n")
    (e,) = _errors(_write(tmp_path, "x.yaml", typed))
    assert e.field == "value" and e.line == 7
    bad_fn = base.replace("  unit: parameters\n", "  unit: p\n  compute: {fn: os.system, args: [ls]}\n")
    (e,) = _errors(_write(tmp_path, "x.yaml", bad_fn))
    assert e.field.startswith("compute")
    missing = base.replace("  unit: parameters\n", "  unit: p\n  compute: {fn: course.quiz.calc.no_such}\n")
    (e,) = _errors(_write(tmp_path, "x.yaml", missing))
    assert e.field.startswith("compute") and "no_such" in e.message and e.line == 7
    for fn in ("worked_examples.no_such", "worked_examples.math", "worked_examples._private"):
        bad = base.replace("  unit: parameters\n", f"  unit: p\n  compute: {{fn: {fn}, args: [1]}}\n")
        (e,) = _errors(_write(tmp_path, "x.yaml", bad))
        assert e.field.startswith("compute") and fn.split(".")[1] in e.message and e.line == 7, (fn, e)
    nested = base.replace("  unit: parameters\n", "  unit: p\n  compute: {fn: worked_examples.sub.thing}\n")
    (e,) = _errors(_write(tmp_path, "x.yaml", nested))
    assert e.field.startswith("compute")
    ok = base.replace("  unit: parameters\n",
                      "  unit: p\n  compute: {fn: worked_examples.lora_matrix_params, kwargs: {d: 10, k: 3, r: 2}}\n")
    qs, errs = load_file(_write(tmp_path, "x.yaml", ok))
    assert not errs and qs[0].value == 26


def test_worked_examples_live_outside_the_package(bank):
    """Formulas that are lesson answers are loaded from quizzes/worked_examples.py, never imported from course."""
    used = {q.compute.fn.split(".", 1)[1] for q in bank.select(types=["numeric"])
            if q.compute.fn.startswith("worked_examples.")}
    assert {"lora_matrix_params", "lora_scaling", "dpo_loss", "orpo_ratio_loss"} <= used
    from course.quiz import calc
    for name in used:
        assert not hasattr(calc, name), f"course.quiz.calc.{name} is a lesson answer; keep it in worked_examples"


def test_topic_must_match_file(tmp_path):
    (e,) = _errors(_write(tmp_path, "x.yaml", GOOD.format(topic="y")))
    assert e.field == "topic" and e.line == 2


def test_duplicate_ids_rejected_across_files(tmp_path):
    _write(tmp_path, "a.yaml", GOOD.format(topic="a"))
    _write(tmp_path, "b.yaml", GOOD.format(topic="b"))
    with pytest.raises(BankError) as ei:
        load_bank(tmp_path)
    (e,) = ei.value.errors
    assert e.field == "id" and "duplicate" in e.message and "a.yaml:1" in e.message and "b.yaml" in e.file


def test_bank_reports_all_errors(tmp_path):
    _write(tmp_path, "a.yaml", GOOD.format(topic="a").replace("difficulty: 1", "difficulty: 0"))
    _write(tmp_path, "b.yaml", "not: a list\n")
    with pytest.raises(BankError) as ei:
        load_bank(tmp_path)
    assert len(ei.value.errors) == 2


# ---- grading -------------------------------------------------------------------------------------------
def _q(**kw) -> Question:
    base = dict(id="q", topic="t", difficulty=1, prompt="A question prompt?", model_answer="x" * 30,
                key_points=["one", "two", "three", "four"], references=["Seed §1"], day=1)
    base.update(kw)
    return Question.model_validate(base)


def test_grade_mcq():
    q = _q(type="mcq", choices=["a", "b", "c"], answer="B")
    assert grade(q, "b").correct and grade(q, " B ").score == 1
    assert not grade(q, "A").correct and "B) b" in grade(q, "A").feedback
    for bad in ("D", "A C", "banana", ""):
        with pytest.raises(AnswerFormatError):
            grade(q, bad)


def test_grade_multi_partial_credit():
    q = _q(type="multi", choices=["a", "b", "c", "d"], answer=["A", "C"])
    assert grade(q, "c, a").score == 1 and grade(q, "AC").correct
    assert grade(q, "A").score == 0.5 and not grade(q, "A").correct
    assert grade(q, "A B").score == 0.0            # one right, one wrong
    assert grade(q, "B D").score == 0.0


def test_grade_numeric_formats_and_tolerance():
    q = _q(type="numeric", unit="parameters",
           compute={"fn": "worked_examples.lora_matrix_params", "kwargs": {"d": 4096, "k": 4096, "r": 16}})
    q.value = evaluate_compute(q.compute)
    for ok in ("131072", "131,072", "131_072", "1.31072e5", "131.072k", "0.131072M"):
        assert grade(q, ok).correct, ok
    assert grade(q, "131500").correct                 # within the default 1%
    assert not grade(q, "122000").correct
    with pytest.raises(AnswerFormatError):
        grade(q, "lots")
    assert parse_number("1/8") == 0.125


def test_grade_short_is_case_and_punctuation_blind():
    q = _q(type="short", accept=["merge_and_unload", "model.merge_and_unload()"])
    assert grade(q, "Merge_And_Unload").correct and grade(q, "model.merge_and_unload()").correct
    assert grade(q, "merge and unload").correct       # underscores and spaces normalize alike
    assert not grade(q, "unload").correct


def test_open_self_grading_against_key_points():
    q = _q(type="open")
    assert parse_key_points("1 3", 4) == [1, 3] and parse_key_points("all", 4) == [1, 2, 3, 4]
    assert parse_key_points("", 4) == [] and parse_key_points("none", 4) == []
    with pytest.raises(AnswerFormatError):
        parse_key_points("5", 4)
    g = grade_key_points(q, [1, 3])
    assert g.score == 0.5 and "two" in g.feedback and "four" in g.feedback
    assert grade_key_points(q, [1, 2, 3, 4]).correct


def test_suggested_rating():
    assert [suggested_rating(s) for s in (0, 0.49, 0.5, 0.74, 0.75, 1.0)] == [1, 1, 2, 2, 3, 3]


# ---- compute: only allow-listed calculators, checked before anything is called (#15 item 6) ---------------
@pytest.mark.parametrize("compute,field", [
    ("{{fn: course.paths.Path, args: ['{victim}'], pick: unlink}}", "compute.fn"),
    ("{{fn: course.memory.model_spec, args: [{{fn: course.paths.Path, args: ['{victim}'], pick: unlink}}]}}",
     "compute.args"),
    ("{{fn: course.memory.lora_params, kwargs: {{spec: {{fn: os.remove, args: ['{victim}']}}, r: 1}}}}",
     "compute.kwargs"),
    ("{{fn: course.memory.model_spec, args: [mistral-7b], pick: __class__}}", "compute.pick"),
    ("{{fn: builtins.eval, args: ['__import__(\"os\").remove(\"{victim}\")']}}", "compute.fn"),
])
def test_compute_outside_allow_list_is_rejected_and_never_called(tmp_path, compute, field):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    base = GOOD.format(topic="x").replace("type: mcq", "type: numeric").replace(
        "  choices: [first, second]\n  answer: B\n", f"  unit: p\n  compute: {compute.format(victim=victim)}\n")
    # a valid question after it: the file is validated as a whole before any compute runs
    p = _write(tmp_path, "x.yaml", base)
    (e,) = _errors(p)
    assert victim.read_text() == "keep me"                       # the file survives
    assert e.field == field and e.line == 7 and e.qid == "t-one", str(e)
    assert str(e).startswith(f"{e.file}:7: question 't-one' field '{field}'")
    assert "not an allowed calculator" in e.message or "pick" in e.message


def test_pick_never_calls_a_method(tmp_path):
    base = GOOD.format(topic="x").replace("type: mcq", "type: numeric").replace(
        "  choices: [first, second]\n  answer: B\n",
        "  unit: p\n  compute: {fn: course.memory.model_spec, args: [mistral-7b], pick: projection_shapes}\n")
    (e,) = _errors(_write(tmp_path, "x.yaml", base))
    assert e.field == "compute" and "never calls" in e.message


def test_allow_list_names_real_functions_only():
    from course.quiz.loader import _resolve
    from course.quiz.schema import ALLOWED_COMPUTE

    for name in ALLOWED_COMPUTE:
        assert callable(_resolve(name)), name
    with pytest.raises(ValueError):
        _resolve("course.paths.Path")
