"""The learner's and the instructor's journeys in a real browser: headless Debian Chromium (selenium) against a
JupyterLab this test starts on 127.0.0.1 (free port, token), on a course tree like a fresh clone's after
`make lab`: lessons/, a learner's workspace/ made by `course start`, and the gradebook registered by
`course gradebook` (formgrader reads ./nbgrader_config.py, as from the repository root).

Chromium has no network but loopback (a dead proxy), so a page that needs a CDN fails here as it would offline.
A screenshot of every step is saved under the test's tmp folder (printed at the end; `-s` shows it).
Where chromium is missing the test fails with the install command (never a silent skip).
"""

from __future__ import annotations

import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException

from browser_support import chrome, jupyterlab, require_chromium, wait_for
from course.authoring.cells import dumps, read_source
from course.authoring.formgrader import register
from course.authoring.layout import Layout
from course.authoring.student import start, with_installed_kernel
from course.mathjax import MARKER, cdn_urls, export_html

REPO = Layout.default()
SMALL_DAY, SMALL_NB = "day1_lora_qlora", "04_memory_calculator"      # the reference runs in seconds
WIDGET_DAY, WIDGET_NB = "day7_interview", "01_drill_and_decide"

NB_CONFIG = '''from pathlib import Path
from course.authoring.nbgrader_setup import nbgrader_config
c = get_config()  # noqa: F821
c.merge(nbgrader_config(Path(__file__).resolve().parent / "autograder"))
'''


def course_tree(tmp: Path) -> Layout:
    """lessons/ (a copy), workspace/ (`course start` of two days) and a registered gradebook, under ``tmp``."""
    shutil.copytree(REPO.lessons, tmp / "lessons")
    layout = Layout(REPO.solutions, tmp / "lessons", tmp / "autograder", tmp / "workspace")
    (tmp / "autograder").mkdir()
    (tmp / "nbgrader_config.py").write_text(NB_CONFIG)
    register(layout, log=lambda *_: None)
    for day in (SMALL_DAY, WIDGET_DAY):
        start(layout, day, log=lambda *_: None)
    # the learner finished the small notebook: their copy is the reference solution
    ref = read_source(REPO.solutions / SMALL_DAY / f"{SMALL_NB}.py")
    (tmp / "workspace" / SMALL_DAY / f"{SMALL_NB}.ipynb").write_text(with_installed_kernel(dumps(ref)))
    return layout


class Shots:
    def __init__(self, d, folder: Path):
        self.d, self.folder, self.files = d, folder, []
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str) -> Path:
        p = self.folder / f"{len(self.files) + 1:02d}_{name}.png"
        self.d.save_screenshot(str(p))
        self.files.append(p)
        return p


def open_notebook(d, lab, path: str):
    d.get(lab.page(f"/lab/tree/{path}"))
    name = path.rsplit("/", 1)[-1]
    # JupyterLab restores the previous layout first: wait until the current tab is this notebook and shows its cells
    wait_for(d, f"""const t = document.querySelector('.lm-DockPanel .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel');
                    return t !== null && t.textContent.trim() === {name!r} &&
                           document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell') !== null""",
             180, f"notebook {path} displayed")
    activate(d)
    # the kernel is up and idle (the status bar's kernel item, which shows only for the active notebook)
    wait_for(d, "return /\\| Idle/.test(document.querySelector('#jp-main-statusbar').innerText)", 180,
             "an idle kernel (status bar)")


def activate(d):
    """Click the displayed notebook's first cell. After a page load JupyterLab's *current* widget can be the previously
    active tab, or none (headless Chromium gives the page no focus event: the status bar then hides the kernel item,
    seen with JupyterLab 4.6.6), while another notebook is displayed; Run ▸ Run All Cells acts on the current one
    (seen: the Day 7 notebook ran again, the displayed one not at all)."""
    for attempt in range(20):           # the panel can still be re-rendering: a found cell may go stale at once
        cell = wait_for(d, "return document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')", 60,
                        "a cell of the displayed notebook")
        try:
            cell.click()
            break
        except (StaleElementReferenceException, ElementClickInterceptedException):
            time.sleep(0.5)
    else:
        raise AssertionError("the displayed notebook's first cell could not be clicked (stale 20 times)")
    time.sleep(0.5)


def run_all(d):
    activate(d)
    run = d.execute_script("""for (const el of document.querySelectorAll('.lm-MenuBar-itemLabel'))
                                if (el.textContent.trim() === 'Run') return el.closest('.lm-MenuBar-item');""")
    run.click()
    item = wait_for(d, """for (const el of document.querySelectorAll('.lm-Menu-item .lm-Menu-itemLabel'))
                             if (el.textContent.trim() === 'Run All Cells') return el.closest('.lm-Menu-item');""",
                    30, "the Run All Cells menu item")
    item.click()


def is_dirty(d) -> bool:
    return d.execute_script("return document.querySelector('.lm-TabBar-tab.jp-mod-current.jp-mod-dirty, "
                            ".lm-TabBar-tab.jp-mod-dirty') !== null")


WIDGET = "document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output .widget-vbox')"


def answer_widget(d) -> str:
    """Answer the drill card's question (first choice / a typed answer), press Check; return the feedback text."""
    wait_for(d, f"const w = {WIDGET}; return w && w.querySelector('input, textarea') !== null", 120,
             "the drill widget with a question")
    for _ in range(2):
        d.execute_script(f"""const w = {WIDGET}; w.scrollIntoView({{block: 'center'}});
            const radio = w.querySelector('.widget-radio-box input[type=radio]');
            const boxes = [...w.querySelectorAll('input[type=checkbox]')];
            const text = w.querySelector('textarea, .widget-text input[type=text]');
            if (radio) radio.click();
            else if (boxes.length) {{ if (!boxes[0].checked) boxes[0].click(); }}
            else if (text) {{ text.value = '16'; text.dispatchEvent(new Event('input', {{bubbles: true}}));
                             text.dispatchEvent(new Event('change', {{bubbles: true}})); }}
            for (const b of w.querySelectorAll('button')) if (b.textContent.trim() === 'Check') {{ b.click(); break; }}""")
        state = wait_for(d, f"""const t = {WIDGET}.textContent;
            if ((t.includes('✓') || t.includes('✗')) && t.includes('Model answer')) return ['graded', t];
            if (t.includes('Tick the key points')) return ['key points', t];
            return null;""", 90, "the widget's answer to Check")
        if state[0] == "graded":
            return state[1]
    raise AssertionError(f"the drill widget never showed graded feedback: {state[1][:300]}")


@pytest.mark.slow
def test_learner_and_instructor_journeys_in_chromium(tmp_path):
    binary, driver = require_chromium()
    t0 = time.time()
    course_tree(tmp_path)
    with jupyterlab(tmp_path) as lab, chrome(binary, driver) as d:
        shot = Shots(d, tmp_path / "screenshots")

        # 1. /lab: the file browser shows lessons/ and the learner's workspace/
        d.get(lab.page("/lab"))
        names = wait_for(d, """const n = [...document.querySelectorAll('.jp-DirListing-itemText')].map(e => e.textContent);
                               return n.includes('lessons') && n.includes('workspace') ? n : null;""", 180,
                         "lessons/ and workspace/ in the file browser")
        time.sleep(1)                # the listing is in the DOM a moment before it is painted
        shot("lab_file_browser")
        assert "autograder" in names

        # 2. a lesson from workspace/ opens without being marked modified (kernelspec matches the installed one)
        open_notebook(d, lab, f"workspace/{WIDGET_DAY}/{WIDGET_NB}.ipynb")
        time.sleep(2)
        shot("workspace_lesson_open")
        assert not is_dirty(d), "opening an untouched lesson marked it modified (kernelspec/metadata rewritten)"

        # 3. the Day 7 drill widget renders and grades one answer
        run_all(d)
        try:
            feedback = answer_widget(d)
        except AssertionError:
            shot("FAILED_day7_widget")
            raise
        d.execute_script(f"{WIDGET}.scrollIntoView({{block: 'center'}})")
        time.sleep(0.5)
        shot("day7_widget_answered")
        assert "Model answer" in feedback

        # 4. run every cell of a small notebook and read its outputs from the DOM
        open_notebook(d, lab, f"workspace/{SMALL_DAY}/{SMALL_NB}.ipynb")
        n_code = sum(c.cell_type == "code" for c in read_source(REPO.solutions / SMALL_DAY / f"{SMALL_NB}.py").cells)
        run_all(d)
        try:
            done = wait_for(d, """const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
                const err = nb.querySelector('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]');
                if (err && /Error/.test(err.textContent)) return ['error', err.textContent.slice(0, 800)];
                const p = [...nb.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim());
                return p.length && p.every(t => /^\\[\\d+\\]:$/.test(t)) ? p : null;""", 300, "every cell executed")
        except AssertionError:
            shot("FAILED_small_notebook")
            raise
        assert done[0] != "error", f"a cell of the finished notebook failed in JupyterLab: {done[1]}"
        shot("small_notebook_ran")
        outputs = d.execute_script("return [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) "
                                   ".jp-OutputArea-output')].map(e => [e.getAttribute('data-mime-type'), e.textContent])")
        errors = [t for mime, t in outputs if mime == "application/vnd.jupyter.stderr"]
        assert len(done) == n_code and n_code > 3
        assert not errors, errors[:2]
        text = "\n".join(t for _, t in outputs)
        assert "profile: tiny" in text, text[:500]

        # 5. formgrader lists all seven days
        d.get(lab.page("/formgrader"))
        days = REPO.days()
        wait_for(d, "const t = document.body.innerText; return " + " && ".join(f"t.includes('{x}')" for x in days),
                 120, f"formgrader listing {days}")
        shot("formgrader_assignments")
        body = d.execute_script("return document.body.innerText")
        assert "Sorry, the formgrader encountered an error" not in body and len(days) == 7

        # 6. an exported lesson renders its math offline (MathJax from the package, no CDN)
        page = export_html(tmp_path / "lessons" / "day3_dpo_orpo" / "01_dpo_derivation.ipynb", tmp_path / "export.html")
        assert cdn_urls(page.read_text()) == []
        d.get(page.as_uri())
        n_math = wait_for(d, "return document.querySelectorAll('mjx-container svg').length", 60, "typeset math")
        shot("export_math_offline")
        assert n_math > 10

        # 7. JupyterLab's own File > Save and Export Notebook As > HTML (the server's nbconvert handler; with
        #    download=false the browser shows the page instead of saving it): math offline there too
        export = "/nbconvert/html/lessons/day3_dpo_orpo/01_dpo_derivation.ipynb?download=false"
        with urllib.request.urlopen(lab.page(export), timeout=300) as r:
            served = r.read().decode("utf-8")
        assert cdn_urls(served) == [] and MARKER in served, cdn_urls(served)
        d.get(lab.page(export))
        n_math = wait_for(d, "return document.querySelectorAll('mjx-container svg').length", 120,
                          "typeset math in JupyterLab's own HTML export")
        shot("jupyterlab_export_math_offline")
        assert n_math > 10
    print(f"\nbrowser journeys: {time.time() - t0:.0f} s; screenshots: {shot.folder}")
