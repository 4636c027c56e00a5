"""Every script in examples/ runs end to end with `--quick` (a few training steps).

The scripts run in this process (`runpy`), so torch is imported once. Each writes its data
and model under a temporary folder and prints its predictions, which are checked loosely:
after three training steps predictions are not meaningful, the plumbing is.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# The cheapest example runs by default; the rest are marked slow (~10-30 s each on a busy CPU).
FAST = {"text_classification.py"}
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def test_every_task_has_an_example():
    assert set(SCRIPTS) >= {
        "text_classification.py",
        "document_classification.py",
        "token_classification.py",
        "question_answering.py",
        "multiple_choice.py",
        "seq2seq.py",
        "text_generation.py",
    }


@pytest.mark.parametrize(
    "script", [s if s in FAST else pytest.param(s, marks=pytest.mark.slow) for s in SCRIPTS]
)
def test_example_runs(script, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setattr(sys, "argv", [script, "--quick", "--out", str(tmp_path)])
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    out = capsys.readouterr().out
    assert (tmp_path / "model" / "config.json").is_file()
    assert out.strip(), "the example printed no predictions"


@pytest.mark.slow
def test_seq2seq_encoder_decoder_variant(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setattr(
        sys, "argv", ["seq2seq.py", "--quick", "--encoder-decoder", "--out", str(tmp_path)]
    )
    runpy.run_path(str(EXAMPLES / "seq2seq.py"), run_name="__main__")
    assert "->" in capsys.readouterr().out
