"""Short markdown cells (the developers' guide: ≤ ~200 words, split long ones at their headings): no markdown cell
of any solutions/ notebook exceeds 250 words."""

import pytest

from course.authoring.cells import read_source
from course.authoring.layout import Layout

MAX_WORDS = 250
LAYOUT = Layout.default()
SOURCES = [src for day in LAYOUT.days() for src in LAYOUT.sources(day)]


def words(markdown: str) -> int:
    return len(markdown.split())


@pytest.mark.parametrize("source", SOURCES, ids=[f"{s.parent.name}/{s.stem}" for s in SOURCES])
def test_markdown_cells_are_short(source):
    long = []
    for i, cell in enumerate(read_source(source).cells):
        if cell.cell_type == "markdown" and words(cell.source) > MAX_WORDS:
            first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")[:60]
            long.append(f"cell {i + 1}: {words(cell.source)} words, starting {first!r}")
    assert not long, (f"{source.relative_to(LAYOUT.solutions.parent)}: markdown cells over {MAX_WORDS} words "
                      "(split them at their headings):\n" + "\n".join(long))
