"""A drill card for JupyterLab (ipywidgets): the same bank, grading and history as ``course quiz``.

    >>> from course.quiz.loader import load_bank
    >>> from course.quiz.widgets import drill_widget
    >>> drill_widget(load_bank().select(["lora"]), seed=0)

mcq/multi/numeric/short answers are graded automatically, with the choices shuffled on every presentation
(the order is recorded with the answer); open questions take a typed answer, then show it beside the model
answer with a checklist of key points to tick. *Skip* moves on without scoring. With ``record=True`` every graded answer is appended to the same history
``course review`` and ``course quiz stats`` read.
"""

from __future__ import annotations

import html
import random

from . import history as H
from .grading import AnswerFormatError, grade, grade_key_points, suggested_rating
from .schema import LETTERS, Question
from .session import _presented, _session_salt, numeric_hint


def _h(s: str) -> str:
    return html.escape(s).replace("\n", "<br>")


def drill_widget(questions: list[Question], seed: int | None = 0, record: bool = False, count: int | None = None):
    import ipywidgets as w

    qs = list(questions)
    random.Random(seed).shuffle(qs)
    qs = qs[:count] if count else qs
    salt = _session_salt(seed)
    shown = [_presented(q, salt) for q in qs]           # (question as shown, permutation of its choices)
    state = {"i": 0, "score": 0.0, "answered": 0, "skipped": 0, "graded": False, "typed": None}
    header, body, feedback = w.HTML(), w.HTML(), w.HTML()
    text = w.Text(placeholder="your answer", layout=w.Layout(width="60%"))
    radio = w.RadioButtons(options=[], layout=w.Layout(width="95%"))
    boxes = w.VBox()
    answer_box = w.Textarea(placeholder="type your answer (or say it aloud), then Check",
                            layout=w.Layout(width="95%", height="80px"))
    check, nxt = w.Button(description="Check", button_style="primary"), w.Button(description="Next")
    skip = w.Button(description="Skip")
    area = w.VBox()

    def current() -> Question:
        return shown[state["i"]][0]

    def render():
        state["graded"] = False
        feedback.value = ""
        state["typed"] = None
        if state["i"] >= len(qs):
            header.value = (f"<b>Done</b>: {state['score']:.1f} / {state['answered']}"
                            + (f" ({state['skipped']} skipped, not scored)" if state["skipped"] else ""))
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
            answer_box.value = ""
            boxes._for = None
            area.children = [answer_box]
        else:
            text.placeholder = f"answer in {q.unit}" if q.type == "numeric" else "your answer"
            area.children = [text] + ([w.HTML(f"<small>{_h(numeric_hint(q))}</small>")] if q.type == "numeric" else [])

    def finish(q: Question, g, typed: str):
        state["graded"] = True
        state["score"] += g.score
        state["answered"] += 1
        if record:
            H.reviews_log().append(H.review_record(q.id, q.topic, "quiz", g.score, suggested_rating(g.score),
                                                   perm=shown[state["i"]][1], answer=typed))
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
                typed = radio.value.split(")")[0]
                g = grade(q, typed)
            elif q.type == "multi":
                typed = "".join(L for L, b in zip(LETTERS, boxes.children) if b.value)
                if not typed:
                    raise AnswerFormatError("tick at least one choice (or Skip)")
                g = grade(q, typed)
            elif q.type == "open":
                if getattr(boxes, "_for", None) != q.id:
                    state["typed"] = answer_box.value
                    boxes.children = [w.Checkbox(description=k, indent=False, layout=w.Layout(width="95%"))
                                      for k in q.key_points]
                    boxes._for = q.id
                    yours = (f"<p><i>Your answer:</i> {_h(state['typed'])}</p>" if state["typed"].strip()
                             else "<p><i>Your answer:</i> (given aloud)</p>")
                    area.children = [w.HTML(yours + f"<p><i>Model answer:</i> {_h(q.model_answer)}</p>"
                                            "<p>Tick the key points you covered, then Check again:</p>"), boxes]
                    return
                covered = [i for i, b in enumerate(boxes.children, 1) if b.value]
                boxes._for = None
                typed = state["typed"] or ""
                g = grade_key_points(q, covered)
            else:
                typed = text.value
                if not typed.strip():
                    raise AnswerFormatError("type an answer first (or Skip)")
                g = grade(q, typed)
        except AnswerFormatError as e:
            feedback.value = f"<p>{_h(str(e))}</p>"
            return
        finish(q, g, typed)

    def on_next(_):
        if state["i"] < len(qs):
            state["i"] += 1
        render()

    def on_skip(_):
        if state["i"] >= len(qs):
            return
        if not state["graded"]:
            state["skipped"] += 1
        on_next(_)

    check.on_click(on_check)
    nxt.on_click(on_next)
    skip.on_click(on_skip)
    render()
    return w.VBox([header, body, area, w.HBox([check, nxt, skip]), feedback])
