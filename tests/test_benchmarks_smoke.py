"""Every benchmark still runs and still prints every figure it promises (`--quick`: tiny
configs; the numbers mean nothing). Slow: run with `pytest -m slow`.

A script declares its figures (`RESULT-KEYS ...`, from `benchmarks/common.Results`) and must
print each as `RESULT <key> <finite number> <unit>` and write them all to its results file:
a script that stops printing a figure, or prints a NaN, fails here.
"""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("bench_*.py"))
RESULT = re.compile(r"^RESULT (\S+) (\S+)", re.MULTILINE)


def figures(stdout: str) -> tuple[list[str], dict[str, float]]:
    declared = re.search(r"^RESULT-KEYS(.*)$", stdout, re.MULTILINE)
    assert declared, "the script declares no RESULT-KEYS (use benchmarks/common.Results)"
    return declared.group(1).split(), {k: float(v) for k, v in RESULT.findall(stdout)}


def test_figures_parser_rejects_a_missing_figure():
    keys, values = figures("RESULT-KEYS a b\nRESULT a 1.5 x  # first\n")
    assert keys == ["a", "b"] and values == {"a": 1.5}
    assert set(keys) - set(values) == {"b"}


@pytest.mark.slow
@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_quick_run(script, tmp_path):
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--results-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    keys, values = figures(result.stdout)
    assert keys, "no figures declared"
    assert set(keys) <= set(values), f"figures not printed: {set(keys) - set(values)}"
    assert all(math.isfinite(values[k]) for k in keys), values
    saved = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert set(saved["figures"]) == set(keys)
    assert saved["versions"]["torch"] and saved["machine"]["cores"]
