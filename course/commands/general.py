"""``course days``, ``course profiles``, ``course build-base``, ``course export``."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("days", help="the 7-day plan with your progress",
                       description="List the 7-day plan and your progress: lessons started and checks passed.")
    p.set_defaults(func=cmd_days)

    p = sub.add_parser("profiles", help="the run profiles (tiny, small, a100)",
                       description="Print the profile table: model, data, device and LoRA settings of each profile.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_profiles)

    p = sub.add_parser("build-base", help="rebuild the shipped tiny base model (deterministic, minutes)",
                       description="Regenerate the tiny world's data files, tokenizer and pretrained base model "
                                   "into course/assets (seeded; prints build_info.json).")
    p.add_argument("--steps", type=int, default=None, help="pretraining steps (default: the recorded recipe)")
    p.set_defaults(func=cmd_build_base)

    p = sub.add_parser("export", help="a notebook as one self-contained HTML page (math renders offline)",
                       description="Convert a notebook to HTML with nbconvert's lab template, MathJax inlined "
                                   "(no CDN), so the page renders math with no network.")
    p.add_argument("notebook", help="e.g. workspace/day3_dpo_orpo/01_dpo_derivation.ipynb")
    p.add_argument("-o", "--output", default=None, help="the HTML file (default: beside the notebook)")
    p.set_defaults(func=cmd_export)


def cmd_days(args) -> int:
    from ..days import DAYS
    from ..paths import LESSONS
    from ..progress import day_summary

    print(f"{'day':<4} {'':<4} {'lesson folder':<24} {'notebooks':>9}  {'started':<8} {'checks':<8} title")
    for d in DAYS:
        folder = LESSONS / d.folder
        n = len(list(folder.glob("*.ipynb"))) if folder.is_dir() else 0
        s = day_summary(d.folder)
        checks = f"{s['passed']}/{s['total']}" if s["checked"] else "-"
        print(f"{d.number:<4} {d.weekday:<4} {d.folder:<24} {n:>9}  {'yes' if s['started'] else 'no':<8} {checks:<8} {d.title}")
    print("\nStart a day with `.venv/bin/course start day1`; check a notebook with "
          "`.venv/bin/course check <notebook>`.")
    return 0


def cmd_profiles(args) -> int:
    from ..profiles import PROFILES, table

    if args.json:
        print(json.dumps({k: v.as_dict() for k, v in PROFILES.items()}, indent=2))
    else:
        print(table())
    return 0


def cmd_build_base(args) -> int:
    from ..tinyworld.build_base import TRAIN, build

    info = build(steps=args.steps or TRAIN["steps"])
    info.pop("loss_curve_every_10", None)
    print(json.dumps(info, indent=2))
    return 0


def cmd_export(args) -> int:
    import sys
    from pathlib import Path

    from ..mathjax import export_html

    nb = Path(args.notebook)
    if not nb.is_file():
        print(f"course export: no such file {nb}", file=sys.stderr)
        return 1
    print(f"wrote {export_html(nb, Path(args.output) if args.output else None)}")
    return 0
