"""``course quiz`` (practice, validate, stats, export-anki), ``course drill``, ``course review``.

History lives in ``$COURSE_HOME`` (default ``~/.local/share/finetune-course``), never in the repository.
All three interactive commands read answers line by line from stdin, so they can be scripted.
"""

from __future__ import annotations

import sys


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _ints(s: str) -> list[int]:
    return [int(x) for x in _csv(s)]


def _common(p) -> None:
    p.add_argument("--bank", default=None, help="question folder (default: quizzes/ in the repository)")
    p.add_argument("--topic", "--topics", dest="topics", type=_csv, default=None,
                   help="comma-separated topics (see `.venv/bin/course quiz stats` for the list)")
    p.add_argument("--difficulty", type=_ints, default=None, help="comma-separated levels among 1,2,3")
    p.add_argument("--type", dest="types", type=_csv, default=None, help="comma-separated: mcq,multi,numeric,short,open")
    p.add_argument("--tag", dest="tags", type=_csv, default=None, help="comma-separated tags (e.g. seed-12)")


def register(sub) -> None:
    p = sub.add_parser("quiz", help="practise the interview bank; validate, stats, export-anki",
                       description="Practise questions from the interview bank (auto-graded mcq/multi/numeric/short; "
                                   "open questions self-graded against the key points). Subcommands: validate, "
                                   "stats, export-anki.")
    _common(p)
    p.add_argument("-n", "--count", type=int, default=10, help="questions in this session (default 10)")
    p.add_argument("--seed", type=int, default=None,
                   help="fixes the question order and the order choices are shown in (default: random)")
    p.set_defaults(func=cmd_practice)
    qs = p.add_subparsers(dest="quiz_command", metavar="SUBCOMMAND")

    v = qs.add_parser("validate", help="check every question file against the schema",
                      description="Validate quizzes/*.yaml: schema, computed numeric answers, unique ids. "
                                  "Errors name the file, line and field.")
    v.add_argument("--bank", default=None)
    v.set_defaults(func=cmd_validate)

    s = qs.add_parser("stats", help="mastery per topic and reviews per day (writes a PNG)")
    s.add_argument("--bank", default=None)
    s.add_argument("--out", default=None, help="PNG path (default: $COURSE_HOME/quiz-stats.png)")
    s.add_argument("--days", type=int, default=30, help="days shown in the reviews-per-day chart")
    s.set_defaults(func=cmd_stats)

    e = qs.add_parser("export-anki", help="write the bank as an Anki deck (.apkg)")
    e.add_argument("out", help="the .apkg file to write")
    e.add_argument("--bank", default=None)
    e.set_defaults(func=cmd_export)

    d = sub.add_parser("drill", help="a timed mock interview weighted to your weak topics",
                       description="A mock interview: random questions, weighted to the topics you answer worst, "
                                   "with a visible timer and follow-ups; a score report at the end (saved as JSON).")
    _common(d)
    d.add_argument("--minutes", type=float, default=20, help="length of the drill (default 20)")
    d.add_argument("--max-questions", type=int, default=None, help="stop after this many questions")
    d.add_argument("--seed", type=int, default=None)
    d.add_argument("--json", action="store_true", help="also print the report as JSON")
    d.add_argument("--design", action="store_true",
                   help="a system-design case instead (quizzes/design/): timer, computed numbers, weighted rubric")
    d.add_argument("--case", default=None, help="with --design: the case id (default: one you have done least well)")
    d.set_defaults(func=cmd_drill)

    r = sub.add_parser("review", help="spaced repetition (FSRS) of due cards",
                       description="Review the cards FSRS says are due (then new ones), rating each Again/Hard/Good/"
                                   "Easy; shows your streak and a 7-day forecast.")
    _common(r)
    r.add_argument("--new", type=int, default=10, help="new (never seen) cards to add (default 10)")
    r.add_argument("--limit", type=int, default=None, help="at most this many cards")
    r.add_argument("--seed", type=int, default=None, help="fixes the order choices are shown in (default: random)")
    r.set_defaults(func=cmd_review)


def _bank(args):
    from ..quiz.loader import BankError, load_bank

    try:
        return load_bank(args.bank)
    except BankError as e:
        print(f"the question bank has {len(e.errors)} problem(s):", file=sys.stderr)
        for err in e.errors:
            print(f"  {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _select(bank, args):
    try:
        qs = bank.select(args.topics, args.difficulty, args.types, args.tags)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        raise SystemExit(2) from None
    if not qs:
        print("no questions match these filters", file=sys.stderr)
        raise SystemExit(2)
    return qs


def _console():
    """A console on stdin/stdout; refuses (exit 2, one sentence) when there is nothing to read from."""
    from ..quiz.session import Console

    if sys.stdin is None or sys.stdin.closed:
        print("error: stdin is closed, so there is no way to answer; run this in a terminal or pipe the answers "
              "in (e.g. printf 'B\\n' | course quiz -n 1)", file=sys.stderr)
        raise SystemExit(2)
    return Console()


def _writable_history(*logs) -> None:
    """Refuse before the first question if the history cannot be written (no answer given only to be lost)."""
    from ..quiz import history as H

    for log in logs or (H.reviews_log(),):
        why = H.writable(log)
        if why:
            print(f"error: {why}", file=sys.stderr)
            raise SystemExit(1)


def cmd_practice(args) -> int:
    from ..quiz.session import practice

    bank = _bank(args)
    qs = _select(bank, args)
    con = _console()
    _writable_history()
    practice(bank, qs, con, count=args.count, seed=args.seed)
    return 0


def cmd_validate(args) -> int:
    from collections import Counter

    from pathlib import Path

    bank = _bank(args)
    by_topic = Counter(q.topic for q in bank.questions)
    by_type = Counter(q.type for q in bank.questions)
    by_level = Counter(q.difficulty for q in bank.questions)
    print(f"OK: {len(bank)} questions in {len(by_topic)} topics, ids unique, "
          f"{by_type['numeric']} numeric answers computed by the course's calculators.")
    print("  " + ", ".join(f"{t} {n}" for t, n in sorted(by_topic.items())))
    print("  " + ", ".join(f"{t} {n}" for t, n in sorted(by_type.items())))
    print("  difficulty " + ", ".join(f"{d}: {n} ({n / len(bank):.0%})" for d, n in sorted(by_level.items())))
    design_dir = (Path(args.bank) if args.bank else None)
    if design_dir is None or (design_dir / "design").is_dir():
        cases = _design(args)
        print(f"OK: {len(cases)} system-design cases, {sum(len(c.numbers) for c in cases)} numbers computed, "
              f"rubrics {min(len(c.rubric) for c in cases)}–{max(len(c.rubric) for c in cases)} weighted points.")
    return 0


def cmd_stats(args) -> int:
    from ..quiz import history as H
    from ..quiz.stats import mastery, plot, reviews_per_day, table
    from ..quiz import srs

    bank = _bank(args)
    reviews = H.reviews_log().read()
    m = mastery(bank, reviews)
    print(table(m))
    today = H.now().date()
    per_day = reviews_per_day(reviews, today, args.days)
    print(f"\n{len(reviews)} answers graded in total; {sum(n for _, n in per_day)} in the last {args.days} days; "
          f"streak {srs.streak(reviews, today)} day(s).")
    out = plot(m, per_day, args.out or H.data_dir() / "quiz-stats.png")
    print(f"chart: {out}")
    return 0


def cmd_export(args) -> int:
    from ..quiz.anki import export

    bank = _bank(args)
    out = export(bank, args.out)
    print(f"wrote {len(bank)} notes to {out} (stable GUIDs: re-importing updates the same notes)")
    return 0


def cmd_drill(args) -> int:
    from ..quiz import history as H
    from ..quiz.session import drill, report_json

    if args.design:
        return cmd_design(args)
    bank = _bank(args)
    qs = _select(bank, args)
    con = _console()
    _writable_history(H.reviews_log(), H.drills_log())
    report = drill(bank, qs, con, minutes=args.minutes, max_questions=args.max_questions, seed=args.seed)
    if args.json:
        print(report_json(report))
    return 0


def _design(args):
    from pathlib import Path

    from ..quiz.design import load_design
    from ..quiz.loader import BankError

    try:
        return load_design(Path(args.bank) / "design" if args.bank else None)
    except BankError as e:
        print(f"the design cases have {len(e.errors)} problem(s):", file=sys.stderr)
        for err in e.errors:
            print(f"  {err}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_design(args) -> int:
    from ..quiz import history as H
    from ..quiz.session import design_drill, report_json

    cases = _design(args)
    con = _console()
    _writable_history(H.reviews_log(), H.drills_log())
    minutes = args.minutes if args.minutes != 20 else None          # default: the case's own time budget
    try:
        report = design_drill(cases, con, case_id=args.case, minutes=minutes, seed=args.seed)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    if args.json:
        print(report_json(report))
    return 0


def cmd_review(args) -> int:
    from ..quiz.session import review

    bank = _bank(args)
    qs = _select(bank, args)
    con = _console()
    _writable_history()
    review(bank, qs, con, new_limit=args.new, limit=args.limit, seed=args.seed)
    return 0
