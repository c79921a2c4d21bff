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
