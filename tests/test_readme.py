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


def test_readme_performance_table_is_the_latest_committed_results():
    """Every figure in the README's performance table comes from benchmarks/results/*.json,
    which the scripts write on each full run (regenerate with `benchmarks/report.py --write`)."""
    import importlib.util

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("report", root / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    readme = (root / "README.md").read_text()
    assert report.readme_table(readme) == report.render()
    for script, _, _ in report.ROWS:  # each row's script is committed
        name = script.removesuffix("_cuda").removesuffix("_bf16")
        assert (root / "benchmarks" / f"{name}.py").is_file(), script
