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


MODEL_ID = _stable_id("finetune-course interview question v2")   # v2: choices shuffled on every showing
DECK_ID = _stable_id("finetune-course interview bank")
FIELDS = ["Id", "Topic", "Front", "Back"]


def note_guid(qid: str) -> str:
    import genanki

    return genanki.guid_for("finetune-course", qid)


def _h(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


# Choices are an <ol type=A>: the letters follow the displayed order. The card's script shuffles the list
# every time the front is shown and remembers the order (sessionStorage) so the back shows the same one; the
# right choices carry class "key" and are highlighted on the back only, so the back is right whatever the order.
SHUFFLE_JS = """<script>
(function () {
  var ol = document.querySelector('ol.choices'); if (!ol) return;
  var items = Array.prototype.slice.call(ol.children), key = 'fc-order-' + ol.dataset.qid, order = null;
  var back = !!document.getElementById('answer');
  try { if (back) order = JSON.parse(sessionStorage.getItem(key)); } catch (e) {}
  if (!order || order.length !== items.length) {
    order = items.map(function (_, i) { return i; });
    for (var i = order.length - 1; i > 0; i--) { var j = Math.floor(Math.random() * (i + 1));
      var t = order[i]; order[i] = order[j]; order[j] = t; }
    try { sessionStorage.setItem(key, JSON.stringify(order)); } catch (e) {}
  }
  order.forEach(function (i) { ol.appendChild(items[i]); });
  if (back) ol.classList.add('revealed');
})();
</script>"""


def choices_html(q: Question) -> str:
    keys = set(q.answer_letters)
    return (f'<ol type="A" class="choices" data-qid="{_h(q.id)}">'
            + "".join(f'<li{" class=key" if L in keys else ""}>{_h(c)}</li>' for L, c in zip(LETTERS, q.choices))
            + "</ol>")


def front(q: Question) -> str:
    parts = [_h(q.prompt)]
    if q.choices:
        kind = "choose one" if q.type == "mcq" else "choose all that apply"
        parts.append(f"<i>({kind}; the choices are shuffled each time)</i>" + choices_html(q))
    if q.type == "numeric":
        parts.append(f"<i>(answer in {_h(q.unit or '')})</i>")
    return "<br><br>".join(parts)


def back(q: Question) -> str:
    parts = []
    if q.choices:
        right = [q.choices[LETTERS.index(a)] for a in q.answer_letters]
        parts.append("<b>Answer</b> (highlighted above): " + "; ".join(_h(c) for c in right))
    elif q.type != "open":
        parts.append(f"<b>Answer:</b> {_h(q.answer_text())}")
    parts.append(f"<b>Model answer:</b> {_h(q.model_answer)}")
    parts.append("<b>Key points:</b><ul>" + "".join(f"<li>{_h(k)}</li>" for k in q.key_points) + "</ul>")
    if q.follow_ups:
        parts.append("<b>Follow-ups:</b><ul>" + "".join(
            f"<li>{_h(f.ask)}<br><i>{_h(f.answer)}</i></li>" for f in q.follow_ups) + "</ul>")
    parts.append("<small>" + _h("; ".join(q.references)) + f" · day {q.day}</small>")
    return "<br>".join(parts)


def export(bank: Bank, out: Path | str, deck_name: str = "LLM fine-tuning interview bank") -> Path:
    import genanki

    model = genanki.Model(
        MODEL_ID, "finetune-course question",
        fields=[{"name": f} for f in FIELDS],
        templates=[{"name": "Card 1", "qfmt": "<div class=topic>{{Topic}}</div>{{Front}}" + SHUFFLE_JS,
                    "afmt": "{{FrontSide}}<hr id=answer>{{Back}}" + SHUFFLE_JS}],
        css=(".card{font-family:sans-serif;font-size:18px;text-align:left}.topic{color:#888;font-size:13px}"
             "ol.revealed li.key{font-weight:bold;color:#1a7f37}"),
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
