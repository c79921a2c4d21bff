"""Lints on the interview bank (#19): size and difficulty, answer positions and lengths that give nothing away,
multi-answer keys not clustered, no near-duplicate questions, every reference listed in the README's plan, and
the system-design cases (schema, computed numbers, `course drill --design`)."""

from __future__ import annotations

import io
import itertools
import json
import re
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from course import paths
from course.days import DAYS
from course.quiz import history as H
from course.quiz.design import load_design
from course.quiz.loader import BankError, evaluate_compute, load_bank
from course.quiz.schema import ALLOWED_COMPUTE, LETTERS
from course.quiz.session import Console, choice_order, design_drill, present

README = paths.ROOT / "README.md"


@pytest.fixture(scope="module")
def bank():
    return load_bank()


@pytest.fixture(scope="module")
def cases():
    return load_design()


def test_size_and_difficulty(bank):
    assert len(bank) >= 320
    level3 = sum(q.difficulty == 3 for q in bank.questions)
    assert level3 / len(bank) >= 0.30, f"{level3}/{len(bank)} level-3 questions"


def test_stored_answer_positions_spread(bank):
    """Before any shuffling the keys are spread over positions (for the Anki base order and the YAML)."""
    four = [q for q in bank.select(types=["mcq"]) if len(q.choices) == 4]
    share = Counter(q.answer for q in four)
    for L in "ABCD":
        assert 0.15 <= share[L] / len(four) <= 0.35, (L, dict(share))


def test_shuffled_positions_uniform(bank):
    """Shown positions (what the learner sees) are uniform: each position within 1/n ± 0.05 over 40 sessions."""
    for n in (4,):
        qs = [q for q in bank.select(types=["mcq"]) if len(q.choices) == n]
        pos = Counter(present(q, choice_order(q.id, n, s)).answer for q in qs for s in range(40))
        total = sum(pos.values())
        assert all(abs(pos[L] / total - 1 / n) < 0.05 for L in LETTERS[:n]), dict(pos)


def test_key_is_rarely_the_longest_choice(bank):
    mcq = bank.select(types=["mcq"])
    longest = [q.id for q in mcq if len(q.choices[LETTERS.index(q.answer)]) >= max(len(c) for c in q.choices)]
    assert len(longest) / len(mcq) <= 0.40, f"key is the longest choice in {len(longest)}/{len(mcq)} MCQs"


def test_multi_keys_not_clustered(bank):
    multi = bank.select(types=["multi"])
    sets = Counter(tuple(q.answer_letters) for q in multi)
    assert sets.most_common(1)[0][1] / len(multi) <= 0.25, sets.most_common(3)
    # every position is sometimes right and sometimes wrong; none is right almost always
    for L in "ABCD":
        rate = sum(L in q.answer_letters for q in multi) / len(multi)
        assert 0.3 <= rate <= 0.9, (L, rate)
    # a guesser who always ticks the first three choices gets few multis fully right
    assert sum(q.answer_letters == ["A", "B", "C"] for q in multi) / len(multi) <= 0.2


STOP = set("the a an of to in and or is are what which how why does do for with on at by from as that this it "
           "its be your you when would".split())


def _tokens(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP and len(w) > 1}


def test_no_near_duplicate_questions(bank):
    """Token-set (Jaccard) similarity of prompts ≥ 0.6 is a duplicate in substance — unless both are numeric
    questions with different computed answers (the same calculation on another model)."""
    toks = {q.id: _tokens(q.prompt) for q in bank.questions}
    dups = []
    for a, b in itertools.combinations(bank.questions, 2):
        x, y = toks[a.id], toks[b.id]
        j = len(x & y) / len(x | y)
        if j >= 0.6 and not (a.type == b.type == "numeric" and a.value != b.value):
            dups.append((round(j, 2), a.id, b.id))
    assert not dups, dups


def _reading_list() -> str:
    text = README.read_text()
    week = text[text.index("## The week"):text.index("## How a student works")]
    reading = text[text.index("## Reading list"):]
    reading = reading[:reading.index("\n## ", 5)] if "\n## " in reading[5:] else reading
    return " ".join((week + reading).split())


def test_every_reference_is_in_the_readme_plan(bank, cases):
    plan = _reading_list()
    folders = {d.folder for d in DAYS}
    missing = []
    for item in list(bank.questions) + list(cases):
        for r in item.references:
            if r.startswith("Lesson"):
                assert r.split()[1] in folders, f"{item.id}: unknown lesson {r!r}"
            elif r.startswith("Seed"):
                assert re.fullmatch(r"Seed §\d+(\.\d+)?( and §\d+(\.\d+)?)?", r), f"{item.id}: {r!r}"
            elif r not in plan:
                missing.append((item.id, r))
    assert not missing, f"references not in README's reading list: {missing[:10]}"


def test_every_reference_in_the_reading_list_is_used(bank, cases):
    """The reading list is generated from the bank: nothing listed that nothing cites (no padding)."""
    text = README.read_text()
    start = text.index("## Reading list")
    reading = " ".join(text[start:text.index("\n## ", start + 5)].split())
    used = {r for item in list(bank.questions) + list(cases) for r in item.references}
    listed = [x.strip().rstrip(".") for x in reading.split("table above.", 1)[1].split(";")]
    assert set(listed) <= used, set(listed) - used


# ---- system-design cases ---------------------------------------------------------------------------------
def test_design_cases(cases):
    assert len(cases) >= 12
    assert len({c.id for c in cases}) == len(cases)
    raw = load_design(compute=False)
    for c, r in zip(cases, raw):
        assert c.minutes >= 10 and len(c.constraints) >= 2 and len(c.rubric) >= 5, c.id
        assert any(p.weight >= 3 for p in c.rubric), f"{c.id}: no heavy rubric point"
        for n, rn in zip(c.numbers, r.numbers):
            assert n.compute.fn in ALLOWED_COMPUTE and n.value == evaluate_compute(n.compute)
            assert rn.value is None                                      # never typed
            assert c.number_text(n).split()[0] in c.model_answer, (c.id, n.key)
        assert "{" not in c.model_answer, c.id


DESIGN = """\
- id: design-x
  title: A small design case
  difficulty: 3
  minutes: 10
  scenario: {scenario}
  constraints: [{{name: tenants, value: 10, unit: adapters}}, {{name: rank, value: 16}}]
  numbers:
    - {{key: mib, name: one adapter, unit: MiB, compute: {compute}}}
  rubric:
    - {{point: one shared base with unmerged adapters, weight: 3}}
    - {{point: "sizes computed ({{mib}} MiB)", weight: 2}}
    - {{point: routing by tenant, weight: 1}}
    - {{point: monitoring and canaries, weight: 1}}
  model_answer: "{answer}"
  references: [Lesson day5_adapters_serving]
  day: 5
"""
SCEN = "Serve ten tenants on one GPU with their own LoRA adapters, each one of rank sixteen on all projections."
ANS = ("One shared base with unmerged adapters selected per request; each adapter is {mib} MiB, so all ten fit "
       "easily; route by tenant, keep a registry, canary new versions and monitor per-tenant quality and latency.")
GOOD_COMPUTE = '{fn: course.quiz.calc.adapter_bytes, kwargs: {model: mistral-7b, r: 16}, divide: "2**20"}'


def _design_dir(tmp_path, **kw):
    d = tmp_path / "design"
    d.mkdir(exist_ok=True)
    (d / "cases.yaml").write_text(DESIGN.format(scenario=kw.get("scenario", SCEN), answer=kw.get("answer", ANS),
                                                compute=kw.get("compute", GOOD_COMPUTE)))
    return d


def test_design_schema_errors_name_file_line_field(tmp_path):
    (c,) = load_design(_design_dir(tmp_path))
    assert c.numbers[0].value == 80 and "80 MiB" in c.model_answer and "(80 MiB)" in c.rubric[1].point
    victim = tmp_path / "keep.txt"
    victim.write_text("x")
    with pytest.raises(BankError) as ei:
        load_design(_design_dir(tmp_path, compute=f"{{fn: course.paths.Path, args: ['{victim}'], pick: unlink}}"))
    (e,) = ei.value.errors
    assert victim.exists() and e.line == 8 and e.field.startswith("numbers.0.compute") and "allowed" in e.message
    with pytest.raises(BankError) as ei:
        load_design(_design_dir(tmp_path, answer=ANS.replace("{mib}", "80")))           # a typed number
    (e,) = ei.value.errors
    assert e.field == "model_answer" and "mib" in e.message


def test_drill_design_records_the_weighted_score(tmp_path, monkeypatch):
    monkeypatch.setenv(H.ENV, str(tmp_path / "home"))
    cases = load_design(_design_dir(tmp_path))
    out = io.StringIO()
    ticks = iter([0, 300, 300, 300])
    rep = design_drill(cases, Console(io.StringIO("shared base, 80 MiB each\nroute by tenant\n\n1 3\n"), out),
                       clock=lambda: next(ticks))
    text = out.getvalue()
    assert "You have 10:00" in text and "05:00 of 10:00" in text and "one adapter: 80 MiB" in text
    assert rep["score"] == pytest.approx(4 / 7, abs=1e-3) and rep["covered"] == [1, 3] and not rep["over_time"]
    (r,) = [json.loads(x) for x in (tmp_path / "home" / "reviews.jsonl").read_text().splitlines()]
    assert r["mode"] == "design" and r["qid"] == "design-x" and r["score"] == pytest.approx(4 / 7, abs=1e-4)
    (d,) = [json.loads(x) for x in (tmp_path / "home" / "drills.jsonl").read_text().splitlines()]
    assert d["kind"] == "design" and "route by tenant" in d["answer"]
    # end of input while typing: what was typed is kept (not scored against the rubric)
    rep2 = design_drill(cases, Console(io.StringIO("half an answer\n"), io.StringIO()), clock=lambda: 0)
    assert rep2["ended"] == "input" and rep2["answer"] == "half an answer" and rep2["score"] == 0


def test_drill_design_cli(tmp_path, monkeypatch, capsys):
    from course.cli import main

    monkeypatch.setenv(H.ENV, str(tmp_path / "home"))
    monkeypatch.setattr("sys.stdin", io.StringIO("my design\n\nall\n"))
    assert main(["drill", "--design", "--case", "design-per-tenant-lora"]) == 0
    out = capsys.readouterr().out
    assert "Per-tenant LoRA serving" in out and "Score: 100% of the rubric's weight" in out


def test_anki_cards_shuffle_choices_and_carry_new_questions(bank, tmp_path):
    import sqlite3
    import zipfile

    from course.quiz.anki import SHUFFLE_JS, export, note_guid

    apkg = export(bank, tmp_path / "deck.apkg")
    with zipfile.ZipFile(apkg) as z:
        name = "collection.anki21" if "collection.anki21" in z.namelist() else "collection.anki2"
        (tmp_path / "c.db").write_bytes(z.read(name))
    con = sqlite3.connect(tmp_path / "c.db")
    try:
        notes = dict(con.execute("select guid, flds from notes").fetchall())
        models = con.execute("select models from col").fetchone()[0]
    finally:
        con.close()
    assert "sessionStorage" in models and "Math.random" in models          # the card template shuffles
    for qid in ("rlvr-grpo-explain", "vl-runtime-load", "mg-ties", "pvx-dora"):
        flds = notes[note_guid(qid)]
        assert qid in flds
    mcq = bank.by_id["vl-runtime-load"]
    flds = notes[note_guid(mcq.id)]
    assert '<ol type="A" class="choices"' in flds and flds.count("<li class=key>") == 1
    assert SHUFFLE_JS.strip().startswith("<script>")
