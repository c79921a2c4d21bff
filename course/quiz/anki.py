"""Export the bank as an Anki deck (.apkg) with genanki.

Model id, deck id and each note's GUID are derived from fixed names and the question id, so importing a
newer export into Anki updates the existing notes instead of adding duplicates.
"""

from __future__ import annotations

import hashlib
import html
from pathlib import Path

from .loader import Bank
from .schema import LETTERS, Question


def _stable_id(name: str) -> int:
    # Anki ids are 64-bit signed; genanki recommends a value in [1 << 30, 1 << 31).
    return (1 << 30) + int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "big") % (1 << 30)


MODEL_ID = _stable_id("finetune-course interview question v1")
DECK_ID = _stable_id("finetune-course interview bank")
FIELDS = ["Id", "Topic", "Front", "Back"]


def note_guid(qid: str) -> str:
    import genanki

    return genanki.guid_for("finetune-course", qid)


def _h(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def front(q: Question) -> str:
    parts = [_h(q.prompt)]
    if q.choices:
        kind = "choose one" if q.type == "mcq" else "choose all that apply"
        parts.append(f"<i>({kind})</i><br>" + "<br>".join(f"{L}) {_h(c)}" for L, c in zip(LETTERS, q.choices)))
    if q.type == "numeric":
        parts.append(f"<i>(answer in {_h(q.unit or '')})</i>")
    return "<br><br>".join(parts)


def back(q: Question) -> str:
    parts = []
    if q.type != "open":
        parts.append(f"<b>Answer:</b> {_h(q.answer_text())}")
    parts.append(f"<b>Model answer:</b> {_h(q.model_answer)}")
    parts.append("<b>Key points:</b><ul>" + "".join(f"<li>{_h(k)}</li>" for k in q.key_points) + "</ul>")
    if q.follow_ups:
        parts.append("<b>Follow-ups:</b><ul>" + "".join(f"<li>{_h(k)}</li>" for k in q.follow_ups) + "</ul>")
    parts.append("<small>" + _h("; ".join(q.references)) + f" · day {q.day}</small>")
    return "<br>".join(parts)


def export(bank: Bank, out: Path | str, deck_name: str = "LLM fine-tuning interview bank") -> Path:
    import genanki

    model = genanki.Model(
        MODEL_ID, "finetune-course question",
        fields=[{"name": f} for f in FIELDS],
        templates=[{"name": "Card 1", "qfmt": "<div class=topic>{{Topic}}</div>{{Front}}",
                    "afmt": "{{FrontSide}}<hr id=answer>{{Back}}"}],
        css=".card{font-family:sans-serif;font-size:18px;text-align:left}.topic{color:#888;font-size:13px}",
    )
    deck = genanki.Deck(DECK_ID, deck_name)
    for q in bank.questions:
        tags = [q.topic, f"difficulty{q.difficulty}", q.type, f"day{q.day}"] + q.tags
        deck.add_note(genanki.Note(model=model, fields=[q.id, q.topic, front(q), back(q)],
                                   guid=note_guid(q.id), tags=sorted(set(tags))))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    genanki.Package(deck).write_to_file(str(out))
    return out
