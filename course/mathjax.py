"""Math that renders offline in every HTML file the course writes (nbconvert exports, nbgrader feedback).

nbconvert's HTML templates load MathJax 2 from a CDN (``cdnjs.cloudflare.com``): offline, a reader sees raw
``$\\pi_\\text{ref}$``. :func:`offline_math` removes that loader and its MathJax-2 configuration block and inlines
MathJax 3's single-file SVG build (``es5/tex-svg.js``, no web fonts to fetch) from the PyPI package
``django-static-mathjax`` (MathJax 3.2.2, Apache-2.0, no dependencies; it installs as the ``mathjax`` package),
configured for the delimiters the notebooks use (``$…$``, ``$$…$$``, ``\\(…\\)``, ``\\[…\\]``).

The page is then self-contained: it renders from a mail attachment or a USB stick as well as from disk.
The price is ~2.1 MB of JavaScript per page; a page without math gets no MathJax at all.

>>> html = offline_math(html)                    # a string from nbconvert / nbgrader
>>> offline_math_file(Path("feedback.html"))      # rewrite a file in place
>>> offline_math_tree(Path("autograder/feedback"))  # every *.html below a folder
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

MATHJAX_VERSION = "3.2.2"
MARKER = "course-offline-mathjax"          # id of the inlined script: proof a page was made offline

# <script ... src="...mathjax..."> </script>   (any CDN or path containing "mathjax")
_LOADER_RE = re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"'][^\"']*mathjax[^\"']*[\"'][^>]*>\s*</script>", re.I)
# <script type="text/x-mathjax-config"> ... </script>   (MathJax 2 only; MathJax 3 ignores it)
_CONFIG_RE = re.compile(r"<script\b[^>]*type\s*=\s*[\"']text/x-mathjax-config[\"'][^>]*>.*?</script>", re.I | re.S)
_OURS_RE = re.compile(r"<script\b[^>]*id=\"" + MARKER + r"(-config)?\"[^>]*>.*?</script>\s*", re.S)
_REQUIRE_RE = re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"'][^\"']*require(\.min)?\.js[\"'][^>]*>\s*</script>", re.I)
_MERMAID_RE = re.compile(r"<script type=\"module\">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*</script>", re.S)
_COMMENTS = ("<!-- Load mathjax -->", "<!-- MathJax configuration -->", "<!-- End of mathjax configuration -->")
# anything that looks like TeX: $x$, $$x$$, \(x\), \[x\], \begin{...}
_MATH_RE = re.compile(r"\$[^$\n]+\$|\\\(|\\\[|\\begin\{")

CONFIG = """window.MathJax = {
  tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']],
        processEscapes: true, processEnvironments: true, tags: 'ams'},
  svg: {fontCache: 'global'},
  options: {skipHtmlTags: ['script', 'noscript', 'style', 'textarea', 'pre', 'code']}
};"""


class MathJaxMissing(RuntimeError):
    pass


def mathjax_file() -> Path:
    """The packaged MathJax 3 single-file build (``tex-svg.js``)."""
    try:
        import mathjax  # django-static-mathjax
    except ImportError:
        raise MathJaxMissing("MathJax is not installed: `.venv/bin/pip install django-static-mathjax` "
                             "(a dependency of this course; `make venv` installs it)") from None
    f = Path(mathjax.__file__).resolve().parent / "static" / "mathjax" / "es5" / "tex-svg.js"
    if not f.is_file():
        raise MathJaxMissing(f"MathJax's tex-svg.js is missing from the installed package (expected {f})")
    return f


@functools.lru_cache(maxsize=1)
def mathjax_script() -> str:
    """The inline ``<script>`` elements: configuration, then MathJax itself."""
    js = mathjax_file().read_text(encoding="utf-8").replace("</script", "<\\/script")
    return (f'<script id="{MARKER}-config">\n{CONFIG}\n</script>\n'
            f'<script id="{MARKER}" data-mathjax-version="{MATHJAX_VERSION}">\n{js}\n</script>\n')


def strip_cdn_mathjax(html: str) -> str:
    """Remove nbconvert's MathJax loader (any ``src`` containing "mathjax"), its MathJax-2 config block, the
    scripts a previous :func:`offline_math` inserted, and the other CDN loaders of nbconvert's template when the
    page does not use them (require.js without widget state, mermaid without diagrams)."""
    if "application/vnd.jupyter.widget-state+json" not in html:
        html = _REQUIRE_RE.sub("", html)
    if 'class="jp-Mermaid' not in html:
        html = _MERMAID_RE.sub("", html)
    html = _LOADER_RE.sub("", html)
    html = _CONFIG_RE.sub("", html)
    html = _OURS_RE.sub("", html)
    for c in _COMMENTS:
        html = html.replace(c, "")
    return html


def has_math(html: str) -> bool:
    body = html.split("<body", 1)[-1]
    body = re.sub(r"<script\b.*?</script>", "", body, flags=re.S | re.I)
    return bool(_MATH_RE.search(body))


def offline_math(html: str) -> str:
    """``html`` with no CDN MathJax and (when the page has math) MathJax 3 inlined before ``</head>``.
    Idempotent: running it twice gives the same page."""
    html = strip_cdn_mathjax(html)
    if not has_math(html):
        return html
    script = mathjax_script()
    i = html.lower().rfind("</head>")
    if i < 0:                                # a fragment: put MathJax first
        return script + html
    return html[:i] + script + html[i:]


def offline_math_file(path: Path) -> Path:
    """Rewrite one HTML file in place (see :func:`offline_math`)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    new = offline_math(text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return path


def offline_math_tree(folder: Path) -> list[Path]:
    """Rewrite every ``*.html`` below ``folder``; returns the files."""
    return [offline_math_file(p) for p in sorted(Path(folder).rglob("*.html"))]


def export_html(notebook: Path, out: Path | None = None) -> Path:
    """A notebook as a self-contained HTML page (nbconvert's lab template, math offline)."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = Path(notebook)
    out = Path(out) if out else notebook.with_suffix(".html")
    nb = nbformat.read(str(notebook), as_version=4)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    out.write_text(offline_math(body), encoding="utf-8")
    return out


CDN_HOSTS = ("cdnjs.cloudflare.com", "cdn.jsdelivr.net", "unpkg.com", "mathjax.org")


def cdn_urls(html: str) -> list[str]:
    """CDN URLs a page would load: ``<script src>`` / ``<link href>`` attributes and quoted URLs inside its own
    small scripts (MathJax's inlined source, which names mathjax.org in strings, is not a load)."""
    html = _OURS_RE.sub("", html)
    urls = re.findall(r"""<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*["'](https?://[^"']+)["']""", html, re.I)
    for body in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S | re.I):
        urls += re.findall(r"""["'](https?://[^"']+)["']""", body)
    return [u for u in urls if any(h in u for h in CDN_HOSTS)]


# --- JupyterLab's own export and `jupyter nbconvert --to html` ------------------------------------------------
# Both use nbconvert's HTMLExporter with the "lab" template. The venv's Jupyter configuration (written once by
# `make venv` / `make lab`: `python -m course.mathjax install`) points them at the "course_offline" template, which
# extends "lab" and inlines the same MathJax 3 through the Jinja filter below.

TEMPLATE_BASEDIR = Path(__file__).resolve().parent / "assets" / "nbconvert"
TEMPLATE_NAME = "course_offline"
FILTER_NAME = "course_offline_mathjax"
CONFIG_FILES = ("jupyter_nbconvert_config.json", "jupyter_server_config.json")   # the CLI, JupyterLab's server


def _notebook_text(nb) -> str:
    """The markdown and the text/latex or text/markdown outputs of a notebook node: where math can be."""
    parts = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            parts.append(cell.get("source", ""))
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            parts += [data.get(k, "") for k in ("text/latex", "text/markdown")]
    return "\n".join(p if isinstance(p, str) else "".join(p) for p in parts)


def mathjax_filter(nb) -> str:
    """Jinja filter of the ``course_offline`` template: the inline MathJax scripts when the notebook has math."""
    return mathjax_script() if _MATH_RE.search(_notebook_text(nb)) else ""


def jupyter_config() -> dict:
    return {"HTMLExporter": {"template_name": TEMPLATE_NAME,
                             "extra_template_basedirs": [str(TEMPLATE_BASEDIR)],
                             "filters": {FILTER_NAME: "course.mathjax.mathjax_filter"}}}


def install_jupyter_config(prefix: str | Path | None = None) -> list[Path]:
    """Merge :func:`jupyter_config` into ``<prefix>/etc/jupyter/{jupyter_nbconvert,jupyter_server}_config.json``
    (prefix: this Python's ``sys.prefix``, the venv). Other settings in those files are kept."""
    import json
    import sys

    folder = Path(prefix or sys.prefix) / "etc" / "jupyter"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CONFIG_FILES:
        path = folder / name
        try:
            current = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (OSError, ValueError) as e:
            raise SystemExit(f"{path} is not valid JSON ({e}); fix or delete it, then rerun") from None
        current.setdefault("HTMLExporter", {}).update(jupyter_config()["HTMLExporter"])
        path.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":                       # python -m course.mathjax install
    import sys

    if sys.argv[1:] != ["install"]:
        raise SystemExit("usage: python -m course.mathjax install")
    for p in install_jupyter_config():
        print(f"offline math for JupyterLab's HTML export and nbconvert: {p}")
