"""The README's Python tour runs as written (so it cannot rot)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "the README has no python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(
            compile(block.replace("/tmp/gpt2kit-tour", str(tmp_path / "tour")), "README", "exec"),
            {},
        )
