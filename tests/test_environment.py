"""environment.yml (conda users) lists exactly the dependencies of pyproject.toml."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert sorted(pip) == sorted(deps), (
        f"only in pyproject: {sorted(set(deps) - set(pip))}; only in environment.yml: {sorted(set(pip) - set(deps))}"
    )
    assert "python=3.11" in env["dependencies"]


def test_fast_moving_libraries_have_tested_lower_bounds():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    tested = {"transformers": "5.24.0", "peft": "0.21.2", "trl": "1.16.0", "bitsandbytes": "0.50.2"}
    for name, version in tested.items():
        spec = next(d for d in deps if d.startswith(name + ">=") or d.startswith(name + "=="))
        assert f">={version}" in spec or f"=={version}" in spec, spec
    assert "torch==2.13.0" in deps


def test_installed_versions_satisfy_the_bounds():
    from importlib.metadata import version

    from packaging.requirements import Requirement

    for dep in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        req = Requirement(dep)
        installed = version(req.name)
        assert req.specifier.contains(installed.split("+")[0], prereleases=True), f"{req.name} {installed} vs {dep}"
