"""Quiz history (append-only JSONL, locking, corruption), FSRS scheduling, stats and the Anki export."""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import sqlite3
import zipfile
from datetime import datetime, timedelta, timezone

import pytest

from course.quiz import history as H
from course.quiz import srs
from course.quiz.anki import export, note_guid
from course.quiz.loader import load_bank
from course.quiz.stats import mastery, plot, reviews_per_day

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv(H.ENV, str(tmp_path / "home"))
    return H.data_dir()


@pytest.fixture(scope="module")
def bank():
    return load_bank()


def rec(qid, rating, at, score=None, topic="lora", mode="review"):
    return H.review_record(qid, topic, mode, score if score is not None else (1.0 if rating >= 3 else 0.0),
                           rating, at=at)


# ---- history ------------------------------------------------------------------------------------------
def test_history_lives_in_course_home_not_repo(home, tmp_path):
    assert home == tmp_path / "home" and home.is_dir()
    log = H.reviews_log()
    log.append(rec("a", 3, T0))
    assert log.path.parent == home and len(log.read()) == 1


def test_append_only_and_validated(home):
    log = H.reviews_log()
    log.append(rec("a", 3, T0), rec("b", 1, T0))
    before = log.path.read_bytes()
    log.append(rec("c", 4, T0))
    assert log.path.read_bytes().startswith(before)          # earlier records are never rewritten
    with pytest.raises(ValueError):
        log.append({"qid": "x", "ts": H.iso(T0), "rating": 7, "score": 1.0, "mode": "review"})


def test_corrupted_history_is_moved_aside_and_restarted(home):
    log = H.reviews_log()
    log.append(rec("a", 3, T0), rec("b", 1, T0))
    with open(log.path, "ab") as f:
        f.write(b'{"qid": "half-written", "ts": \n\x00\xff garbage\n')
    original = log.path.read_bytes()
    out = io.StringIO()
    got = log.read(out=out)
    assert [r["qid"] for r in got] == ["a", "b"]
    msg = out.getvalue()
    assert "corrupted" in msg and "moved aside" in msg and "kept" in msg
    aside = list(home.glob("reviews.corrupt-*.jsonl"))
    assert len(aside) == 1 and aside[0].read_bytes() == original          # kept byte for byte
    assert str(aside[0]) in msg
    # the fresh file holds the readable records and accepts new ones; reading again is silent
    log.append(rec("c", 3, T0))
    out2 = io.StringIO()
    assert [r["qid"] for r in log.read(out=out2)] == ["a", "b", "c"] and out2.getvalue() == ""


def test_wholly_unreadable_history_starts_empty(home):
    log = H.reviews_log()
    log.path.write_bytes(b"\x89PNG not json at all")
    assert log.read(out=io.StringIO()) == []
    assert len(list(home.glob("reviews.corrupt-*"))) == 1


def _writer(home_dir: str, tag: str, n: int) -> None:
    log = H.reviews_log(H.Path(home_dir))
    for i in range(n):
        log.append(H.review_record(f"{tag}-{i}", "lora", "drill", 0.5, 2))


def test_two_writers_at_once_lose_nothing(home):
    ctx = mp.get_context("fork")
    n = 300
    ps = [ctx.Process(target=_writer, args=(str(home), tag, n)) for tag in ("one", "two")]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    out = io.StringIO()
    got = H.reviews_log().read(out=out)
    assert out.getvalue() == "" and len(got) == 2 * n
    assert {r["qid"] for r in got} == {f"{t}-{i}" for t in ("one", "two") for i in range(n)}


# ---- FSRS -----------------------------------------------------------------------------------------------
def test_good_is_due_later_than_again():
    again = srs.replay([rec("q", 1, T0)])["q"]
    good = srs.replay([rec("q", 3, T0)])["q"]
    easy = srs.replay([rec("q", 4, T0)])["q"]
    assert T0 < again.due < good.due < easy.due


def test_replay_is_deterministic_and_order_independent_of_file_order():
    rs = [rec("q", 3, T0), rec("q", 3, T0 + timedelta(days=1)), rec("q", 1, T0 + timedelta(days=5))]
    a = srs.replay(rs)["q"]
    b = srs.replay(list(reversed(rs)))["q"]
    assert a.due == b.due and a.stability == b.stability


def test_due_queue_forecast_and_streak():
    rs = [rec("a", 1, T0), rec("b", 3, T0), rec("c", 3, T0 - timedelta(days=1))]
    cards = srs.replay(rs)
    later = T0 + timedelta(minutes=5)                         # Again's 1-minute step has passed, Good's 10 not
    q = srs.due_queue(["a", "b", "c", "d", "e"], cards, later, new_limit=1)
    assert q == ["c", "a", "d"]        # most overdue first (c's 10-minute step ended a day ago), then 1 new card
    fc = srs.forecast(cards, later, days=7)
    assert len(fc) == 7 and sum(n for _, n in fc) <= 3 and fc[0][1] >= 1
    assert srs.streak(rs, T0.date()) == 2
    assert srs.streak(rs, T0.date() + timedelta(days=1)) == 2  # today not yet reviewed: streak still alive
    assert srs.streak(rs, T0.date() + timedelta(days=3)) == 0


# ---- stats -------------------------------------------------------------------------------------------------
def test_mastery_and_chart(bank, tmp_path):
    lora = [q.id for q in bank.select(["lora"])]
    rs = [rec(lora[0], 3, T0, score=1.0), rec(lora[1], 1, T0, score=0.0),
          rec(lora[0], 1, T0 + timedelta(days=1), score=0.5)]            # the latest score counts
    m = mastery(bank, rs)
    assert m["lora"]["seen"] == 2 and m["lora"]["mastery"] == pytest.approx(0.5 / len(lora))
    assert m["dpo"]["seen"] == 0 and m["dpo"]["mastery"] == 0
    per_day = reviews_per_day(rs, T0.date() + timedelta(days=1), days=3)
    assert [n for _, n in per_day] == [0, 2, 1]
    png = plot(m, per_day, tmp_path / "s.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- Anki -------------------------------------------------------------------------------------------------
def _notes(apkg):
    with zipfile.ZipFile(apkg) as z:
        name = "collection.anki21" if "collection.anki21" in z.namelist() else "collection.anki2"
        db = apkg.parent / f"{apkg.stem}.db"
        db.write_bytes(z.read(name))
    con = sqlite3.connect(db)
    try:
        return con.execute("select guid, flds from notes").fetchall()
    finally:
        con.close()


def test_anki_export_every_question_once_with_stable_guids(bank, tmp_path):
    a = export(bank, tmp_path / "a.apkg")
    b = export(bank, tmp_path / "b.apkg")
    na, nb = _notes(a), _notes(b)
    assert len(na) == len(bank)
    ids = [flds.split("\x1f")[0] for _, flds in na]
    assert sorted(ids) == sorted(q.id for q in bank.questions)              # every question exactly once
    assert len({g for g, _ in na}) == len(bank)
    assert sorted(na) == sorted(nb)                                         # same GUIDs and fields on re-export
    assert {g for g, f in na} == {note_guid(q.id) for q in bank.questions}
    q = bank.by_id["mem-mistral-lora-r16"]
    flds = dict((f.split("\x1f")[0], f) for _, f in na)[q.id]
    assert "41,943,040" in flds                                             # computed answer on the back
