"""A drill card for JupyterLab (ipywidgets): the same bank, grading and history as ``course quiz``.

    >>> from course.quiz.loader import load_bank
    >>> from course.quiz.widgets import drill_widget
    >>> drill_widget(load_bank().select(["lora"]), seed=0)

mcq/multi/numeric/short answers are graded automatically; open questions show the model answer and a
checklist of key points to tick. With ``record=True`` every graded answer is appended to the same history
``course review`` and ``course quiz stats`` read.
"""

from __future__ import annotations

import html
import random

from . import history as H
from .grading import AnswerFormatError, grade, grade_key_points, suggested_rating
from .schema import LETTERS, Question


def _h(s: str) -> str:
    return html.escape(s).replace("\n", "<br>")


def drill_widget(questions: list[Question], seed: int | None = 0, record: bool = False, count: int | None = None):
    import ipywidgets as w

    qs = list(questions)
    random.Random(seed).shuffle(qs)
    qs = qs[:count] if count else qs
    state = {"i": 0, "score": 0.0, "answered": 0, "graded": False}
    header, body, feedback = w.HTML(), w.HTML(), w.HTML()
    text = w.Text(placeholder="your answer", layout=w.Layout(width="60%"))
    radio = w.RadioButtons(options=[], layout=w.Layout(width="95%"))
    boxes = w.VBox()
    check, nxt = w.Button(description="Check", button_style="primary"), w.Button(description="Next")
    area = w.VBox()

    def current() -> Question:
        return qs[state["i"]]

    def render():
        state["graded"] = False
        feedback.value = ""
        if state["i"] >= len(qs):
            header.value = f"<b>Done</b>: {state['score']:.1f} / {state['answered']}"
            body.value, area.children = "", []
            return
        q = current()
        header.value = (f"<b>Q{state['i'] + 1}/{len(qs)}</b> · {q.topic} · difficulty {'*' * q.difficulty} · "
                        f"{q.type} · day {q.day} · score so far {state['score']:.1f}/{state['answered']}")
        body.value = f"<p>{_h(q.prompt)}</p>"
        text.value = ""
        if q.type == "mcq":
            radio.options = [f"{L}) {c}" for L, c in zip(LETTERS, q.choices)]
            radio.value = None
            area.children = [radio]
        elif q.type == "multi":
            boxes.children = [w.Checkbox(description=f"{L}) {c}", indent=False, layout=w.Layout(width="95%"))
                              for L, c in zip(LETTERS, q.choices)]
            area.children = [boxes]
        elif q.type == "open":
            area.children = [w.Textarea(placeholder="say it aloud or type it, then Check",
                                        layout=w.Layout(width="95%", height="80px"))]
        else:
            text.placeholder = f"answer in {q.unit}" if q.type == "numeric" else "your answer"
            area.children = [text]

    def finish(q: Question, g):
        state["graded"] = True
        state["score"] += g.score
        state["answered"] += 1
        if record:
            H.reviews_log().append(H.review_record(q.id, q.topic, "quiz", g.score, suggested_rating(g.score)))
        mark = "✓" if g.correct else "✗"
        feedback.value = (f"<p><b>{mark} {_h(g.feedback)}</b></p><p><i>Model answer:</i> {_h(q.model_answer)}</p>")

    def on_check(_):
        if state["i"] >= len(qs) or state["graded"]:
            return
        q = current()
        try:
            if q.type == "mcq":
                if radio.value is None:
                    raise AnswerFormatError("pick one choice")
                g = grade(q, radio.value.split(")")[0])
            elif q.type == "multi":
                picked = "".join(L for L, b in zip(LETTERS, boxes.children) if b.value)
                g = grade(q, picked)
            elif q.type == "open":
                if not boxes.children or getattr(boxes, "_for", None) != q.id:
                    boxes.children = [w.Checkbox(description=k, indent=False, layout=w.Layout(width="95%"))
                                      for k in q.key_points]
                    boxes._for = q.id
                    area.children = [w.HTML(f"<p><i>Model answer:</i> {_h(q.model_answer)}</p>"
                                            "<p>Tick the key points you covered, then Check again:</p>"), boxes]
                    return
                covered = [i for i, b in enumerate(boxes.children, 1) if b.value]
                boxes._for = None
                g = grade_key_points(q, covered)
            else:
                g = grade(q, text.value)
        except AnswerFormatError as e:
            feedback.value = f"<p>{_h(str(e))}</p>"
            return
        finish(q, g)

    def on_next(_):
        if state["i"] < len(qs):
            state["i"] += 1
        render()

    check.on_click(on_check)
    nxt.on_click(on_next)
    render()
    return w.VBox([header, body, area, w.HBox([check, nxt]), feedback])
