"""What every lesson notebook calls first: pick the profile, seed everything, keep stderr quiet.

nbgrader scores a test cell 0 if it writes to stderr, so library warnings and progress bars are
silenced here, once, rather than in each notebook.
"""

from __future__ import annotations

import logging
import os
import random
import warnings

from .profiles import Profile, get_profile

# Set for local profiles only (tiny, small: everything loads from folders, so a hub lookup could only stall or
# warn); hub profiles (a100) must download on a fresh machine, so these are left alone there. Never overrides a
# value the user set.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
QUIET_ENV = {
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TRL_EXPERIMENTAL_SILENCE": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "BITSANDBYTES_NOWELCOME": "1",
}


def quiet(profile: Profile | str | None = None) -> None:
    """Silence warnings, library loggers and progress bars that would write to stderr.

    For a local profile (``profile``, else ``COURSE_PROFILE``, else tiny) the hub is also switched off
    (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``), unless the user set those variables; a hub profile keeps the hub.
    """
    p = profile if isinstance(profile, Profile) else get_profile(profile)
    env = {**QUIET_ENV, **(OFFLINE_ENV if p.is_local else {})}
    for k, v in env.items():
        os.environ.setdefault(k, v)
    warnings.filterwarnings("ignore")
    for name in ("transformers", "datasets", "trl", "peft", "accelerate", "bitsandbytes", "torch", "jupytext"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        import datasets

        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    except ImportError:
        pass


def seed_everything(seed: int = 0) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(profile: str | None = None, seed: int = 0, threads: int | None = None) -> Profile:
    """Quiet stderr, seed Python/NumPy/torch, set torch threads; return the active profile.

    ``COURSE_PROFILE`` in the environment overrides ``profile`` (the notebook's parameters cell).
    """
    p = get_profile(profile)
    quiet(p)
    if p.source:                         # a converted wheel model: fail here, clearly, if it is not fetched yet
        from .models import require

        require(p.source)
    import torch

    if threads or os.environ.get("COURSE_THREADS"):
        torch.set_num_threads(int(threads or os.environ["COURSE_THREADS"]))
    seed_everything(seed)
    from .short_errors import install

    install()                            # an unsolved exercise's knock-on errors: one line each, not tracebacks
    print(f"profile: {p.name} · model: {p.label} · device: {p.device} · seed: {seed}")
    return p


def progress(iterable=None, desc: str | None = None, total: int | None = None, **kwargs):
    """A progress bar for slow notebook cells, written to stdout (stderr would cost a graded cell its points).

    JupyterLab redraws a ``\\r``-updated stdout line in place, so this shows as one moving bar.
    """
    import sys

    from tqdm.std import tqdm

    kwargs.setdefault("mininterval", 0.5)
    kwargs.setdefault("ncols", 88)
    kwargs.setdefault("leave", True)
    return tqdm(iterable, desc=desc, total=total, file=sys.stdout, **kwargs)


def check_claims(checks: dict, profile: Profile) -> None:
    """Print each of a lab's claims (``{claim text: holds}``) as ``holds`` / ``FAILS``. On a profile that asserts its
    claims (tiny: every run seeded, the claims measured on seeds 0-2) a failing claim raises ``AssertionError`` naming
    it; on other profiles it prints a WARNING instead (the claims are the tiny profile's)."""
    for claim, holds in checks.items():
        print(("holds   " if holds else "FAILS   ") + claim)
    failed = [c for c, h in checks.items() if not h]
    if profile.asserts_claims:
        assert not failed, "the lesson's claim failed: " + "; ".join(failed)
    elif failed:
        print(f"WARNING: on the {profile.name} profile this lesson's tiny-profile claim does not hold (see above)")


def claim_checker(profile: Profile):
    """``claim(ok, message)`` for one claim or sanity check at a time: prints ``ok:`` / ``WARNING:`` and the
    message; on a profile that asserts its claims (tiny) a false one raises ``AssertionError`` with the message.
    It returns None, so a cell that ends with a claim echoes nothing (a returned bool printed ``True``/``False``)."""

    def claim(ok, message: str) -> None:
        if profile.asserts_claims:
            assert ok, message
        print(("   ok: " if ok else "   WARNING: ") + message)

    return claim
