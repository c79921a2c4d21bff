"""Where things live. Assets ship inside the package; the student workspace is git-ignored."""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ASSETS = PACKAGE / "assets"
TINY_BASE = ASSETS / "tiny-base"          # the shipped tiny base model + tokenizer (save_pretrained)
TINY_DOLLY = ASSETS / "tiny-dolly"        # the tiny instruction data in Dolly-15k's record format
TINY_PREFS = ASSETS / "tiny-prefs"        # the tiny preference set (prompt, chosen, rejected)
ROOT = PACKAGE.parent                     # the repository root (an editable install)
SOLUTIONS = ROOT / "solutions"
LESSONS = ROOT / "lessons"
AUTOGRADER = ROOT / "autograder"
QUIZZES = ROOT / "quizzes"
WORKSPACE = ROOT / "workspace"            # students' copies (git-ignored)
