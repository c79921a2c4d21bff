"""Getting nbgrader's formgrader ready on a fresh clone (``course gradebook``, run by ``make lab``).

Formgrader lists the assignments of the gradebook, and a fresh clone has none (``autograder/gradebook.db`` is
git-ignored): every day is registered here the way ``course build`` does it (nbgrader ``generate_assignment`` from
``solutions/``, hidden tests included), without touching ``lessons/``. Also:
- nbgrader's exchange (release / collect / feedback) lives in ``autograder/exchange/`` (git-ignored), created here;
- students created by ``course grade`` have no names, which formgrader shows as "None, None": each gets its id
  as the last name (and an empty first name) unless it has names already.
A day is registered again only when its sources changed since (``autograder/.registered.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

from .build import generate
from .layout import Layout

STAMP = ".registered.json"


def exchange_dir(layout: Layout) -> Path:
    return layout.autograder / "exchange"


def _fingerprint(layout: Layout, day: str) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in layout.sources(day):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def gradebook_days(layout: Layout) -> list[str]:
    """Assignments in ``autograder/gradebook.db`` (empty when there is none)."""
    db = layout.autograder / "gradebook.db"
    if not db.exists():
        return []
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{db}") as gb:
        return sorted(a.name for a in gb.assignments)


def name_students(layout: Layout, names: dict[str, str] | None = None) -> int:
    """Give every nameless student a last name, ``names[id]`` (the submission's own name, when its id had to be
    cleaned) or its id: formgrader shows "None, None" otherwise."""
    db = layout.autograder / "gradebook.db"
    if not db.exists():
        return 0
    from nbgrader.api import Gradebook

    n = 0
    with Gradebook(f"sqlite:///{db}") as gb:
        for s in gb.students:
            if s.first_name is None and s.last_name is None:
                gb.update_or_create_student(s.id, first_name="", last_name=(names or {}).get(s.id, s.id))
                n += 1
    return n


def register(layout: Layout | None = None, days: list[str] | None = None, log=print) -> list[str]:
    """Register ``days`` (default: every day with sources) in the gradebook; return the days (re)generated."""
    layout = layout or Layout.default()
    days = days or layout.days()
    exchange_dir(layout).mkdir(parents=True, exist_ok=True)
    stamp_file = layout.autograder / STAMP
    try:
        stamp = json.loads(stamp_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        stamp = {}
    present = set(gradebook_days(layout))
    done = []
    for day in days:
        fp = _fingerprint(layout, day)
        if day in present and stamp.get(day) == fp and (layout.autograder / "source" / day).is_dir():
            continue
        generate(layout, day)
        stamp[day] = fp
        done.append(day)
        log(f"registered {day} in {layout.autograder / 'gradebook.db'}")
        stamp_file.write_text(json.dumps(stamp, indent=1, sort_keys=True))
    named = name_students(layout)
    if named:
        log(f"named {named} student(s) after their ids (formgrader showed them as 'None, None')")
    if not done:
        log(f"gradebook up to date: {', '.join(days)}")
    return done
