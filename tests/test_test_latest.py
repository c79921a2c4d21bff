"""scripts/test_latest.py (make test-latest): the requirement rewriting and the 'what broke' summary."""

import sys

from course.paths import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import test_latest  # noqa: E402


def test_only_the_six_libraries_are_unpinned():
    reqs = test_latest.requirements()
    for name in test_latest.LATEST:
        assert name in reqs, f"{name} should be installed unpinned (newest)"
    assert "torch==2.13.0" in reqs
    assert not any(r.startswith(("transformers>", "trl>", "peft>", "bitsandbytes>", "accelerate>", "datasets>"))
                   for r in reqs)
    assert any(r.startswith("nbgrader") for r in reqs)


def test_broken_api_names_what_changed():
    f = test_latest.broken_api
    assert f("ImportError: cannot import name 'SFTConfig' from 'trl' (/x/trl/__init__.py)") == "import trl.SFTConfig"
    assert f("AttributeError: module 'peft.utils' has no attribute 'hotswap'") == "attribute peft.utils.hotswap"
    assert f("TypeError: SFTConfig.__init__() got an unexpected keyword argument 'max_length'") == \
        "argument SFTConfig(max_length=)"
    assert f("ModuleNotFoundError: No module named 'trl.experimental.orpo'") == "module trl.experimental.orpo"
    assert f("AssertionError: loss 3.2 > 2.0\nmore") == "AssertionError: loss 3.2 > 2.0"


def test_summary_from_a_junit_report(tmp_path):
    xml = tmp_path / "r.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_a" name="test_ok"/>'
        '<testcase classname="tests.test_a" name="test_x"><failure message="TypeError: f() got an unexpected '
        "keyword argument 'beta'\">trace</failure></testcase>"
        '<testcase classname="tests.test_b" name="test_y"><error message="ImportError: cannot import name '
        "'Foo' from 'trl'\">trace</error></testcase>"
        '</testsuite></testsuites>')
    s = test_latest.summary(xml, {"trl": "9.0"})
    assert "trl 9.0" in s and "2 failing tests" in s
    assert "argument f(beta=)" in s and "import trl.Foo" in s and "tests.test_a::test_x" in s
    ok = tmp_path / "ok.xml"
    ok.write_text('<testsuites><testsuite><testcase classname="t" name="a"/></testsuite></testsuites>')
    assert "no test failed" in test_latest.summary(ok)
