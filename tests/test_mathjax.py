"""Every HTML page the course writes renders math offline: no CDN loader left, MathJax 3 inlined from a package.

(The browser test, tests/test_browser.py, opens such a page in Chromium with no network and checks that
MathJax typeset the formulas.)"""

from pathlib import Path

import nbformat

from course.mathjax import (MARKER, cdn_urls, export_html, mathjax_file, offline_math, offline_math_tree,
                            strip_cdn_mathjax)
from course.paths import LESSONS

LESSON = LESSONS / "day3_dpo_orpo" / "01_dpo_derivation.ipynb"


def nbconvert_html(nb) -> str:
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab").from_notebook_node(nb)[0]


def math_notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(r"The DPO loss: $-\log\sigma(\beta\,\Delta)$ and $$\pi_\text{ref}(y\mid x)$$"),
                nbformat.v4.new_code_cell("1 + 1")]
    return nb


def test_mathjax_ships_in_a_package():
    f = mathjax_file()
    assert f.name == "tex-svg.js" and f.stat().st_size > 1_000_000


def test_nbconvert_default_uses_a_cdn_and_offline_math_removes_every_cdn_url():
    html = nbconvert_html(math_notebook())
    assert any("mathjax" in u for u in cdn_urls(html)), "nbconvert's template changed: it no longer loads a CDN MathJax"
    out = offline_math(html)
    assert cdn_urls(out) == [], cdn_urls(out)
    assert f'id="{MARKER}"' in out and "window.MathJax" in out
    assert "MathJax.Hub.Config" not in out            # the MathJax-2 block is gone
    assert out.index(MARKER) < out.index("</head>")
    assert offline_math(out) == out                   # idempotent
    assert r"$-\log\sigma(\beta\,\Delta)$" in out     # the TeX itself is left for MathJax


def test_a_page_without_math_gets_no_mathjax():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("no formulas here, costs 5 dollars")]
    out = offline_math(nbconvert_html(nb))
    assert MARKER not in out and cdn_urls(out) == []


def test_export_and_feedback_tree(tmp_path):
    out = export_html(LESSON, tmp_path / "lesson.html")
    html = out.read_text()
    assert cdn_urls(html) == [] and MARKER in html
    # a feedback tree as nbgrader writes it: <student>/<day>/<nb>.html with the CDN loader
    fb = tmp_path / "feedback" / "alice" / "day3"
    fb.mkdir(parents=True)
    (fb / "01.html").write_text(nbconvert_html(math_notebook()))
    files = offline_math_tree(tmp_path / "feedback")
    assert files and all(cdn_urls(f.read_text()) == [] and MARKER in f.read_text() for f in files)


def test_strip_keeps_widget_loader_when_the_page_has_widget_state():
    page = ('<html><head><script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.1.10/require.min.js">'
            '</script></head><body><script type="application/vnd.jupyter.widget-state+json">{}</script></body></html>')
    assert "require.min.js" in strip_cdn_mathjax(page)
    assert "require.min.js" not in strip_cdn_mathjax(page.replace("vnd.jupyter.widget-state+json", "json"))


def test_course_export_cli(tmp_path):
    from course.cli import main

    assert main(["export", str(LESSON), "-o", str(tmp_path / "x.html")]) == 0
    assert MARKER in (tmp_path / "x.html").read_text()
    assert main(["export", str(tmp_path / "missing.ipynb")]) == 1


def test_course_offline_template_through_nbconvert_config():
    """JupyterLab's File → Save and Export Notebook As → HTML and `jupyter nbconvert --to html` build an
    HTMLExporter from the Jupyter configuration: with the course's settings the page is offline."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    from course.mathjax import jupyter_config

    html = HTMLExporter(config=Config(jupyter_config())).from_notebook_node(math_notebook())[0]
    assert cdn_urls(html) == [] and f'id="{MARKER}"' in html
    again = offline_math(html)                        # course export's own pass: still one MathJax, no CDN
    assert again.count(f'id="{MARKER}"') == 1 and cdn_urls(again) == []
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("no formulas here, costs 5 dollars")]
    assert MARKER not in HTMLExporter(config=Config(jupyter_config())).from_notebook_node(nb)[0]


def test_install_jupyter_config_merges_and_the_venv_has_it(tmp_path):
    import json
    import sys

    from course.mathjax import CONFIG_FILES, TEMPLATE_NAME, install_jupyter_config

    etc = tmp_path / "etc" / "jupyter"
    etc.mkdir(parents=True)
    (etc / "jupyter_server_config.json").write_text('{"ServerApp": {"port": 9999}}')
    assert {p.name for p in install_jupyter_config(tmp_path)} == set(CONFIG_FILES)
    server = json.loads((etc / "jupyter_server_config.json").read_text())
    assert server["ServerApp"] == {"port": 9999} and server["HTMLExporter"]["template_name"] == TEMPLATE_NAME
    install_jupyter_config(tmp_path)                  # twice: same files
    assert json.loads((etc / "jupyter_server_config.json").read_text()) == server
    # `make venv` ran it for this venv (what JupyterLab's export and the nbconvert CLI read)
    for name in CONFIG_FILES:
        installed = Path(sys.prefix) / "etc" / "jupyter" / name
        assert installed.is_file(), f"{installed} missing: run `make venv` (python -m course.mathjax install)"
        assert json.loads(installed.read_text())["HTMLExporter"]["template_name"] == TEMPLATE_NAME


def test_jupyter_nbconvert_cli_writes_offline_math(tmp_path):
    import shutil
    import subprocess
    import sys

    nb = tmp_path / "lesson.ipynb"
    shutil.copy(LESSON, nb)
    jupyter = Path(sys.prefix) / "bin" / "jupyter"
    r = subprocess.run([str(jupyter), "nbconvert", "--to", "html", str(nb)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    html = nb.with_suffix(".html").read_text(encoding="utf-8")
    assert cdn_urls(html) == [] and f'id="{MARKER}"' in html
