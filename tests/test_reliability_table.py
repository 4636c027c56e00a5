"""docs/reliability.md stays true: every test in a file the table cites has a row, and every
row names a test that exists (and gives the case, the expected behaviour and the result)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
CITE = re.compile(r"`(tests/test_[\w]+\.py)::(test_\w+)`")


def rows() -> list[list[str]]:
    """The table rows (cells) of the page that cite a test."""
    out = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("|") and CITE.search(line):
            out.append([c.strip() for c in line.strip().strip("|").split("|")])
    return out


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


def test_every_row_names_an_existing_test_and_is_complete():
    table = rows()
    assert len(table) >= 40
    for cells in table:
        assert len(cells) == 4 and all(cells), cells  # case, expected, result, test
        for file, name in CITE.findall(cells[3]):
            assert (ROOT / file).is_file(), f"{file} (cited for {cells[0]!r}) does not exist"
            assert name in defined_tests(ROOT / file), f"{file}::{name} does not exist"


def test_every_test_in_the_cited_files_has_a_row():
    cited: dict[str, set[str]] = {}
    for cells in rows():
        for file, name in CITE.findall(cells[3]):
            cited.setdefault(file, set()).add(name)
    for suite in ("checkpoints", "config", "trainer", "data"):
        assert f"tests/test_reliability_{suite}.py" in cited
    for file, names in cited.items():
        missing = defined_tests(ROOT / file) - names
        assert not missing, f"tests in {file} without a row in docs/reliability.md: {missing}"
