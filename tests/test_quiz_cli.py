"""`course quiz` / `course drill` / `course review` flows with scripted answers on stdin."""

from __future__ import annotations

import io
import json
import textwrap
from datetime import datetime, timedelta, timezone

import pytest

from course.cli import main
from course.quiz import history as H
from course.quiz.loader import load_bank
from course.quiz.session import Console, drill

BANK = """\
- id: f-mcq
  topic: {topic}
  difficulty: 1
  type: mcq
  prompt: Which matrix of LoRA starts at zero?
  choices: [A, B]
  answer: B
  model_answer: B starts at zero so that BA = 0 at initialization.
  key_points: [B = 0]
  references: [Hu et al. 2021 (LoRA)]
  day: 1
- id: f-multi
  topic: {topic}
  difficulty: 2
  type: multi
  prompt: Which methods use a frozen reference model?
  choices: [PPO, DPO, ORPO]
  answer: [A, B]
  model_answer: PPO's KL penalty and DPO's log-ratios use the reference; ORPO does not.
  key_points: [PPO, DPO]
  references: [Rafailov et al. 2023 (DPO)]
  day: 3
- id: f-numeric
  topic: {topic}
  difficulty: 1
  type: numeric
  prompt: LoRA parameters of a rank-2 adapter on a 10×3 weight?
  compute: {{fn: worked_examples.lora_matrix_params, kwargs: {{d: 10, k: 3, r: 2}}}}
  unit: parameters
  model_answer: "{{value}} = r·(d + k) = 2 × 13."
  key_points: [r(d+k)]
  references: [Hu et al. 2021 (LoRA)]
  day: 1
- id: f-short
  topic: {topic}
  difficulty: 1
  type: short
  prompt: What label value is ignored by cross_entropy?
  accept: ["-100"]
  model_answer: -100 is the default ignore_index of cross_entropy.
  key_points: ["-100"]
  references: [Seed §2.2]
  day: 4
"""

OPEN = """\
- id: o-{n}
  topic: talk
  difficulty: 2
  type: open
  prompt: Explain idea number {n} to the interviewer.
  model_answer: A full model answer for idea number {n}, long enough.
  key_points: [first point, second point]
  follow_ups:
    - ask: "And what about follow-up {n}?"
      answer: The model answer of follow-up number {n}, long enough.
      key_points: [follow-up point a, follow-up point b]
  references: [Seed §7]
  day: 7
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv(H.ENV, str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def small_bank(tmp_path):
    d = tmp_path / "bank"
    d.mkdir()
    (d / "basics.yaml").write_text(BANK.format(topic="basics"))
    (d / "talk.yaml").write_text("".join(OPEN.format(n=n) for n in range(1, 5)))
    return d


def run(monkeypatch, capsys, argv, stdin=""):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


ANSWERS = {"f-mcq": "B", "f-multi": "A B", "f-numeric": "26", "f-short": "-100"}


def shown(bank_dir, qid, seed, letters):
    """The letters the learner types for the bank's ``letters`` of ``qid`` once its choices are shuffled for
    the session ``--seed seed`` (choices are shuffled on every presentation)."""
    from course.quiz.schema import LETTERS
    from course.quiz.session import choice_order

    q = load_bank(bank_dir).by_id[qid]
    perm = choice_order(qid, len(q.choices), str(seed))
    return " ".join(sorted(LETTERS[perm.index(LETTERS.index(L))] for L in letters.split()))


def _ans(bank_dir, qid, seed, given=None):
    given = given or ANSWERS[qid]
    return shown(bank_dir, qid, seed, given) if qid in ("f-mcq", "f-multi") else given


def _order(bank_dir, seed):
    """The order `course quiz --seed` asks the basics questions in (same shuffle as the session)."""
    import random

    qs = load_bank(bank_dir).select(["basics"])
    random.Random(seed).shuffle(qs)
    return [q.id for q in qs]


def test_validate_ok_on_repo_bank(monkeypatch, capsys):
    rc, out, _ = run(monkeypatch, capsys, ["quiz", "validate"])
    assert rc == 0 and out.startswith("OK:")
    assert int(out.split()[1]) >= 150


def test_validate_reports_file_line_field(monkeypatch, capsys, tmp_path):
    (tmp_path / "bad.yaml").write_text(BANK.format(topic="bad").replace("difficulty: 2", "difficulty: 7"))
    with pytest.raises(SystemExit) as e:
        run(monkeypatch, capsys, ["quiz", "validate", "--bank", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "bad.yaml:14: question 'f-multi' field 'difficulty'" in err


def test_quiz_all_auto_types_scored(monkeypatch, capsys, home, small_bank):
    order = _order(small_bank, 3)
    stdin = "".join(_ans(small_bank, q, 3) + "\n" for q in order)
    rc, out, _ = run(monkeypatch, capsys, ["quiz", "--bank", str(small_bank), "--topic", "basics", "-n", "4",
                                           "--seed", "3"], stdin)
    assert rc == 0 and "Score: 4.0 / 4  (100%)" in out
    recs = [json.loads(line) for line in (home / "reviews.jsonl").read_text().splitlines()]
    assert sorted(r["qid"] for r in recs) == sorted(ANSWERS) and all(r["mode"] == "quiz" for r in recs)
    assert all(r["score"] == 1.0 and r["rating"] == 3 for r in recs)


def test_quiz_wrong_answers_and_retry_on_unreadable(monkeypatch, capsys, home, small_bank):
    order = _order(small_bank, 5)
    wrong = {"f-mcq": "A", "f-multi": "A", "f-numeric": "lots\n30", "f-short": "-1"}
    stdin = "".join(_ans(small_bank, q, 5, wrong[q]) + "\n" for q in order)
    rc, out, _ = run(monkeypatch, capsys, ["quiz", "--bank", str(small_bank), "--topic", "basics", "-n", "4",
                                           "--seed", "5"], stdin)
    assert "is not a number" in out and "expected 26 parameters" in out
    assert "Score: 0.5 / 4" in out                     # multi: one of two right picks, nothing wrong picked


def test_quiz_open_question_self_graded(monkeypatch, capsys, home, small_bank):
    rc, out, _ = run(monkeypatch, capsys, ["quiz", "--bank", str(small_bank), "--topic", "talk", "-n", "1",
                                           "--seed", "0"], "I would explain it\n2\n")
    assert "Key points an interviewer listens for:" in out and "1. first point" in out
    assert "50% of the key points" in out and "Score: 0.5 / 1" in out


def test_quiz_stops_cleanly_at_end_of_input(monkeypatch, capsys, home, small_bank):
    rc, out, _ = run(monkeypatch, capsys, ["quiz", "--bank", str(small_bank), "--topic", "basics", "-n", "4",
                                           "--seed", "3"], _ans(small_bank, _order(small_bank, 3)[0], 3) + "\n")
    assert rc == 0 and "(stopped)" in out and "Score: 1.0 / 1" in out


def test_unknown_topic_is_an_error(monkeypatch, capsys, home, small_bank):
    with pytest.raises(SystemExit):
        run(monkeypatch, capsys, ["quiz", "--bank", str(small_bank), "--topic", "nope"])
    assert "unknown topic" in capsys.readouterr().err


def test_drill_report_saved(monkeypatch, capsys, home, small_bank):
    stdin = "my answer\nall\nfollow-up answer\n1\n" * 3
    rc, out, _ = run(monkeypatch, capsys, ["drill", "--bank", str(small_bank), "--topics", "talk", "--minutes", "30",
                                           "--max-questions", "3", "--seed", "1", "--json"], stdin)
    assert rc == 0 and "left · Q1" in out and "Follow-up: And what about follow-up" in out
    assert "=== Score report ===" in out and "3 question(s)" in out
    (line,) = (home / "drills.jsonl").read_text().splitlines()
    report = json.loads(line)
    assert report["questions"] == 3 and report["percent"] == 100.0 and report["ended"] == "count"
    assert all(a["follow_ups"][0]["answer"] == "follow-up answer" for a in report["answers"])
    assert len({a["qid"] for a in report["answers"]}) == 3                 # no question asked twice
    reviews = (home / "reviews.jsonl").read_text().splitlines()
    assert len(reviews) == 3 and all(json.loads(r)["mode"] == "drill" for r in reviews)


def test_drill_ends_when_time_is_up(home, small_bank):
    bank = load_bank(small_bank)
    ticks = iter(range(0, 10_000, 200))                 # a fake clock: 200 s pass between readings
    out = io.StringIO()
    con = Console(io.StringIO("a\nall\nb\nall\n" * 5), out)
    report = drill(bank, bank.select(["talk"]), con, minutes=5, seed=0, clock=lambda: next(ticks))
    assert report["ended"] == "time" and 1 <= report["questions"] < 4
    assert "Time's up" in out.getvalue()


def test_drill_weights_weak_topics(home, small_bank):
    from course.quiz.session import topic_weights

    bank = load_bank(small_bank)
    log = H.reviews_log()
    log.append(*[H.review_record(q.id, q.topic, "quiz", 1.0, 3) for q in bank.select(["basics"])])
    log.append(*[H.review_record(q.id, q.topic, "quiz", 0.0, 1) for q in bank.select(["talk"])])
    w = topic_weights(bank, ["basics", "talk"], log.read())
    assert w["talk"] > w["basics"]


def test_review_flow_records_ratings_and_schedules(monkeypatch, capsys, home, small_bank):
    # two new cards: answer both right; rate the first Again (1), accept the suggestion (Good) for the second
    stdin = f"{shown(small_bank, 'f-mcq', 4, 'B')}\n1\n{shown(small_bank, 'f-multi', 4, 'A B')}\n\n"
    rc, out, _ = run(monkeypatch, capsys, ["review", "--bank", str(small_bank), "--topic", "basics", "--new", "2",
                                           "--type", "mcq,multi", "--seed", "4"], stdin)
    assert rc == 0 and "0 card(s) due, 2 new" in out and "next review" in out
    assert "Streak: 1 day(s)" in out and "Forecast" in out
    recs = [json.loads(line) for line in (home / "reviews.jsonl").read_text().splitlines()]
    assert [(r["qid"], r["rating"], r["mode"]) for r in recs] == [("f-mcq", 1, "review"), ("f-multi", 3, "review")]
    # Again is due sooner than Good
    from course.quiz import srs

    cards = srs.replay(recs)
    assert cards["f-mcq"].due < cards["f-multi"].due
    # a later session: both are due once their learning steps pass; no new cards requested
    from course.quiz.session import review

    bank = load_bank(small_bank)
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    out2 = io.StringIO()
    stdin2 = f"{shown(small_bank, 'f-mcq', 9, 'B')}\n3\n{shown(small_bank, 'f-multi', 9, 'A B')}\n3\n"
    done = review(bank, bank.select(["basics"], types=["mcq", "multi"]), Console(io.StringIO(stdin2), out2),
                  new_limit=0, at=lambda: later, seed=9)
    assert [a.q.id for a in done] == ["f-mcq", "f-multi"] and "2 card(s) due, 0 new" in out2.getvalue()


def test_stats_and_export_cli(monkeypatch, capsys, home, small_bank, tmp_path):
    run(monkeypatch, capsys, ["quiz", "--bank", str(small_bank), "--topic", "basics", "-n", "4", "--seed", "3"],
        "".join(_ans(small_bank, q, 3) + "\n" for q in _order(small_bank, 3)))
    png = tmp_path / "stats.png"
    rc, out, _ = run(monkeypatch, capsys, ["quiz", "stats", "--bank", str(small_bank), "--out", str(png)])
    assert rc == 0 and "basics" in out and "100%" in out and png.read_bytes()[:4] == b"\x89PNG"
    rc, out, _ = run(monkeypatch, capsys, ["quiz", "export-anki", str(tmp_path / "deck.apkg"), "--bank", str(small_bank)])
    assert rc == 0 and "wrote 8 notes" in out and (tmp_path / "deck.apkg").stat().st_size > 0


def test_corrupt_history_does_not_break_commands(monkeypatch, capsys, home, small_bank):
    home.mkdir(parents=True, exist_ok=True)
    (home / "reviews.jsonl").write_text("{not json\n")
    rc, out, err = run(monkeypatch, capsys, ["quiz", "stats", "--bank", str(small_bank),
                                             "--out", str(home / "s.png")])
    assert rc == 0 and "moved aside" in err
    assert len(list(home.glob("reviews.corrupt-*.jsonl"))) == 1


def test_drill_widget_grades_and_records(home, small_bank):
    from course.quiz.widgets import drill_widget

    bank = load_bank(small_bank)
    qs = bank.select(["basics"], types=["mcq"]) + bank.select(["talk"])[:1]
    box = drill_widget(qs, seed=None, record=True)
    header, body, area, buttons, feedback = box.children
    check, nxt, _skip = buttons.children
    seen = []
    for _ in range(len(qs)):
        qid = "f-mcq" if "LoRA starts at zero" in body.value else "open"
        seen.append(qid)
        if qid == "f-mcq":
            radio = area.children[0]
            (right,) = [o for o in radio.options if o.endswith(") B")]     # shuffled: find choice "B" by text
            radio.value = right
            check.click()
        else:
            area.children[0].value = "I would say idea number one"   # the open question's answer box
            check.click()                                     # first click: show the key-point checklist
            assert "I would say idea number one" in area.children[0].value
            boxes = area.children[1].children
            boxes[0].value = True
            check.click()
        assert "Model answer" in feedback.value
        nxt.click()
    assert sorted(seen) == ["f-mcq", "open"] and "Done" in header.value and "1.5 / 2" in header.value
    recs = [json.loads(line) for line in (home / "reviews.jsonl").read_text().splitlines()]
    assert sorted(r["score"] for r in recs) == [0.5, 1.0]
