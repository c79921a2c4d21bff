"""Version drift check: the fast test suite against the newest transformers / trl / peft / bitsandbytes /
accelerate / datasets (torch stays at the course's pin), in a separate venv, with a summary of what broke.

    make test-latest                      # = python scripts/test_latest.py (builds .venv-latest once, then reuses it)
    python scripts/test_latest.py --summary-only report.xml    # re-print the summary of an earlier run

The course pins each fast-moving library below its next minor release (pyproject.toml). This script installs the
same dependencies with those upper bounds dropped for the six libraries (``pip install --upgrade``), runs
``pytest -m "not slow"`` there, and prints, per failing test, the API that broke (a missing attribute or import, an
unexpected keyword argument, ...) so the pins can be moved knowingly. Not part of ``make test``: it needs PyPI and
its result changes whenever a library releases.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LATEST = ("transformers", "trl", "peft", "bitsandbytes", "accelerate", "datasets")
VENV = ROOT / ".venv-latest"
# this test checks the installed versions against the pins: in this venv it fails by design
DESELECT = ["tests/test_environment.py::test_installed_versions_satisfy_the_bounds"]


def requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The course's dependencies with the six fast-moving libraries unpinned (torch and the rest unchanged)."""
    from packaging.requirements import Requirement

    out = []
    for dep in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        name = Requirement(dep).name
        out.append(name if name in LATEST else dep)
    return out


API_PATTERNS = [
    (r"cannot import name '([\w.]+)' from '([\w.]+)'", "import {1}.{0}"),
    (r"No module named '([\w.]+)'", "module {0}"),
    (r"module '([\w.]+)' has no attribute '(\w+)'", "attribute {0}.{1}"),
    (r"'?(\w+)'? object has no attribute '(\w+)'", "attribute {0}.{1}"),
    (r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'", "argument {0}({1}=)"),
    (r"(\w+)\(\) got an unexpected keyword argument '(\w+)'", "argument {0}({1}=)"),
    (r"got an unexpected keyword argument '(\w+)'", "argument {0}="),
    (r"missing \d+ required positional argument[s]?: '(\w+)'", "new required argument {0}"),
]


def broken_api(message: str) -> str:
    """A short name for what broke, from a failure message (else the message's first line, shortened)."""
    for pattern, fmt in API_PATTERNS:
        m = re.search(pattern, message)
        if m:
            return fmt.format(*m.groups())
    first = next((ln.strip() for ln in message.splitlines() if ln.strip()), "?")
    return first[:100]


def failures(junit_xml: Path) -> list[tuple[str, str]]:
    """(test id, failure message) for every failed or erroring test case in a pytest junit XML report."""
    out = []
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        for tag in ("failure", "error"):
            el = case.find(tag)
            if el is not None:
                msg = (el.get("message") or "") + "\n" + (el.text or "")
                out.append((f"{case.get('classname')}::{case.get('name')}", msg))
    return out


def summary(junit_xml: Path, versions: dict[str, str] | None = None) -> str:
    fails = failures(junit_xml)
    lines = []
    if versions:
        lines.append("newest versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if not fails:
        lines.append("no test failed against the newest libraries")
        return "\n".join(lines)
    apis = Counter(broken_api(m) for _, m in fails)
    lines.append(f"{len(fails)} failing tests; what broke (count):")
    lines += [f"  {n:>3}  {api}" for api, n in apis.most_common()]
    lines.append("failing tests:")
    lines += [f"  {tid}: {broken_api(m)}" for tid, m in fails]
    return "\n".join(lines)


def run(cmd, **kw):
    print("+ " + " ".join(map(str, cmd)), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", default=str(VENV), help="where to build the venv (default .venv-latest)")
    ap.add_argument("--jobs", default="2", help="pytest-xdist workers")
    ap.add_argument("--summary-only", metavar="JUNIT_XML", help="only print the summary of an earlier report")
    ap.add_argument("--install-only", action="store_true", help="build/upgrade the venv and print versions; no tests")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. test files to run instead of all)")
    a = ap.parse_args(argv)
    if a.summary_only:
        print(summary(Path(a.summary_only)))
        return 0
    venv = Path(a.venv)
    py = venv / "bin" / "python"
    if not py.exists():
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(py), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([str(py), "-m", "pip", "install", "--quiet", "--upgrade", *requirements()])
    run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(ROOT)])
    out = subprocess.run([str(py), "-c", "import importlib.metadata as m, json; print(json.dumps("
                          f"{{n: m.version(n) for n in {list(LATEST)!r} + ['torch']}}))"],
                         capture_output=True, text=True, check=True).stdout
    import json

    versions = json.loads(out)
    print("newest versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)
    if a.install_only:
        return 0
    report = venv / "report.xml"
    cmd = [str(py), "-m", "pytest", "-q", "-m", "not slow", "-n", a.jobs, "-p", "no:cacheprovider",
           f"--junitxml={report}", *[f"--deselect={d}" for d in DESELECT], *a.pytest_args]
    print("+ " + " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    print("\n=== make test-latest: summary ===")
    print(summary(report, versions))
    return rc


if __name__ == "__main__":
    sys.exit(main())
