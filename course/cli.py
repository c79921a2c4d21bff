"""The ``course`` command. Each group of subcommands lives in its own module with a ``register(sub)``
function; heavy libraries are imported only inside the handlers, so ``course --help`` is instant."""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that add subcommands, in the order they appear in ``course --help``.
SUBCOMMAND_MODULES = [
    "course.commands.general",      # days, profiles, build-base
    "course.commands.authoring",    # build, start, check, mutants, grade
    "course.commands.quiz",         # quiz (validate, stats, export-anki), drill, review
    "course.commands.memory",       # memory (training-memory calculator)
    "course.commands.models",       # models (fetch / list / path: the small profile's real model)
]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="course",
        description="LLM fine-tuning course: lessons, self-checks, class grading, and interview drills.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
