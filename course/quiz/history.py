"""The learner's quiz history: append-only JSON Lines in a user data directory, never in the repository.

- Where: ``$COURSE_HOME`` if set (tests use a temporary one), else ``$XDG_DATA_HOME/finetune-course``,
  else ``~/.local/share/finetune-course``.
- ``reviews.jsonl``: one line per graded answer (quiz, drill or review): the FSRS scheduler, stats and
  drill weighting are all computed from it by replay, so nothing is ever rewritten in place.
- ``drills.jsonl``: one line per finished drill (its score report).
- Every append and every repair holds an exclusive lock on ``<file>.lock``, and each record is one
  ``write`` on an ``O_APPEND`` descriptor, so two drills writing at once lose nothing.
- A file with unreadable lines is moved aside (``<name>.corrupt-<time>.jsonl``, kept for inspection) and a
  fresh file is started holding the records that could still be read; a message says so.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows: no advisory locks; single-writer use only)
    fcntl = None

ENV = "COURSE_HOME"


def data_dir() -> Path:
    if os.environ.get(ENV):
        d = Path(os.environ[ENV]).expanduser()
    elif os.environ.get("XDG_DATA_HOME"):
        d = Path(os.environ["XDG_DATA_HOME"]) / "finetune-course"
    else:
        d = Path.home() / ".local" / "share" / "finetune-course"
    d.mkdir(parents=True, exist_ok=True)
    return d


def now() -> datetime:
    return datetime.now(timezone.utc)


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="seconds")


def parse_time(s: str) -> datetime:
    t = datetime.fromisoformat(s)
    if t.tzinfo is None:
        raise ValueError(f"timestamp {s!r} has no time zone")
    return t.astimezone(timezone.utc)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    lock = path.with_name(path.name + ".lock")
    with open(lock, "a") as fh:
        if fcntl:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _check_review(r: dict) -> None:
    if not isinstance(r.get("qid"), str) or not r["qid"]:
        raise ValueError("no question id")
    parse_time(r["ts"])
    if r.get("rating") not in (1, 2, 3, 4):
        raise ValueError("rating must be 1..4")
    s = r.get("score")
    if not isinstance(s, (int, float)) or not 0 <= s <= 1:
        raise ValueError("score must be in [0, 1]")
    if r.get("mode") not in ("quiz", "drill", "review", "design"):
        raise ValueError("mode must be quiz, drill, review or design")


def _check_drill(r: dict) -> None:
    parse_time(r["ts"])
    if not isinstance(r.get("answers"), list):
        raise ValueError("a drill report has a list of answers")


class JsonlLog:
    """An append-only, lock-protected JSON Lines file whose records are checked by ``check``."""

    def __init__(self, path: Path, check: Callable[[dict], None], what: str):
        self.path, self.check, self.what = Path(path), check, what

    def append(self, *records: dict) -> None:
        if not records:
            return
        for r in records:
            self.check(r)
        data = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.path):
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data          # a record cut mid-write: never glue the next one to it
                view = memoryview(data)
                while view:                       # a regular-file write is whole in practice; loop anyway
                    n = os.write(fd, view)
                    view = view[n:]
            finally:
                os.close(fd)

    def _parse(self, raw: bytes) -> tuple[list[dict], list[str]]:
        good, bad = [], []
        for i, line in enumerate(raw.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line.decode("utf-8"))
                if not isinstance(r, dict):
                    raise ValueError("not a JSON object")
                self.check(r)
                good.append(r)
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
                bad.append(f"line {i}: {type(e).__name__}: {str(e)[:80]}")
        return good, bad

    def read(self, out=None) -> list[dict]:
        """All records. A corrupted file is moved aside (kept) and replaced by its readable records."""
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        good, bad = self._parse(raw)
        if not bad:
            return good
        with locked(self.path):
            raw = self.path.read_bytes() if self.path.exists() else b""   # re-read under the lock
            good, bad = self._parse(raw)
            if not bad:
                return good
            stamp = now().strftime("%Y%m%dT%H%M%S%f")
            aside = self.path.with_name(f"{self.path.stem}.corrupt-{stamp}{self.path.suffix}")
            os.replace(self.path, aside)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in good))
            os.replace(tmp, self.path)
        print(f"warning: your {self.what} file {self.path} was corrupted ({len(bad)} unreadable line(s); first: "
              f"{bad[0]}). It was moved aside to {aside} (kept, not deleted) and a fresh file was started with "
              f"the {len(good)} record(s) that could be read.", file=out or sys.stderr)
        return good


def reviews_log(home: Path | None = None) -> JsonlLog:
    return JsonlLog((home or data_dir()) / "reviews.jsonl", _check_review, "quiz history")


def drills_log(home: Path | None = None) -> JsonlLog:
    return JsonlLog((home or data_dir()) / "drills.jsonl", _check_drill, "drill history")


def review_record(qid: str, topic: str, mode: str, score: float, rating: int, at: datetime | None = None,
                  duration_s: float | None = None, perm: list[int] | None = None, answer: str | None = None) -> dict:
    """One graded answer. ``perm`` is the order the choices were shown in (``perm[i]`` = the bank index of
    the i-th shown choice) and ``answer`` what the learner typed, so the presentation can be replayed."""
    r = {"v": 1, "ts": iso(at or now()), "qid": qid, "topic": topic, "mode": mode,
         "score": round(float(score), 4), "rating": int(rating)}
    if duration_s is not None:
        r["duration_s"] = round(float(duration_s), 1)
    if perm is not None:
        r["perm"] = [int(i) for i in perm]
    if answer is not None:
        r["answer"] = str(answer)[:2000]
    return r


def writable(log: "JsonlLog") -> str | None:
    """None if ``log`` can be appended to, else one sentence saying why not (checked before a session asks
    anything, so no answer is given only to be lost)."""
    try:
        log.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.close(fd)
        with locked(log.path):
            pass
    except OSError as e:
        return (f"cannot write your history file {log.path} ({e.strerror or e}); fix its permissions or set "
                f"{ENV} to a writable folder (e.g. {ENV}=/tmp/course-home)")
    return None
