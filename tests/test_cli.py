"""The `gpt2kit` command: help for every subcommand, each job on tiny checkpoints, errors.

Most tests call `main(argv)` in-process (fast); the ones about the installed entry point,
stdin and tracebacks run it as a subprocess.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import torch

from gpt2kit.cli import COMMANDS, EXTERNAL, build_parser, main
from gpt2kit.config import GPT2Config
from gpt2kit.models.auto import model_class
from gpt2kit.pipelines.base import DEFAULT_MODEL_DIR

SUBCOMMANDS = [*COMMANDS, *EXTERNAL]


def _save(folder, name: str, **overrides):
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=1,
        n_embd=16,
        n_head=2,
        n_positions=64,
        bos_token_id=50256,
        eos_token_id=50256,
        **overrides,
    )
    model_class(name)(cfg).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return {
        "lm": _save(root / "lm", "GPT2LMHeadModel"),
        "cls": _save(root / "cls", "GPT2ForSequenceClassification", id2label={0: "neg", 1: "pos"}),
        "ner": _save(
            root / "ner", "GPT2ForTokenClassification", id2label={0: "O", 1: "B-PER", 2: "I-PER"}
        ),
        "qa": _save(root / "qa", "GPT2ForQuestionAnswering"),
        "mc": _save(root / "mc", "GPT2ForMultipleChoice"),
    }


def run(argv, capsys, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_for_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"gpt2kit {command}" in out
    if command in COMMANDS:
        assert "examples:" in out and f"gpt2kit {command}" in out.split("examples:")[1]


def test_top_level_help_lists_every_command():
    text = build_parser().format_help()
    for command in SUBCOMMANDS:
        assert command in text


def test_info(models, capsys):
    code, out, _ = run(["info", models["cls"], "--json"], capsys)
    info = json.loads(out)
    assert code == 0 and info["architecture"] == "GPT2ForSequenceClassification"
    assert info["labels"] == {"0": "neg", "1": "pos"} or info["labels"] == {0: "neg", 1: "pos"}
    assert (info["layers"], info["heads"], info["width"], info["dtype"]) == (1, 2, 16, "float32")
    expected = sum(
        p.numel()
        for p in model_class("GPT2ForSequenceClassification")
        .from_pretrained(models["cls"])
        .parameters()
    )
    assert info["parameters"] == expected and "model.safetensors" in info["files"]
    code, out, _ = run(["info", models["lm"]], capsys)
    assert code == 0 and "GPT2LMHeadModel" in out and "heads 2" in out


def test_generate_with_model_folder(models, capsys):
    code, out, _ = run(
        ["generate", "--model", models["lm"], "-n", "4", "--greedy", "Hello"], capsys
    )
    assert code == 0 and out.startswith("Hello")
    code, out, _ = run(
        ["generate", "-m", models["lm"], "-n", "4", "--greedy", "--json", "Hello", "Bye"], capsys
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["prompt"] for r in rows] == ["Hello", "Bye"] and rows[0]["generated_text"].startswith(
        "Hello"
    )


def test_generate_reads_stdin_and_files(models, capsys, monkeypatch, tmp_path):
    code, out, _ = run(
        ["generate", "-m", models["lm"], "-n", "2", "--json"], capsys, "one\n\ntwo\n", monkeypatch
    )
    assert code == 0 and [json.loads(line)["prompt"] for line in out.splitlines()] == ["one", "two"]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("alpha\nbeta\n")
    code, out, _ = run(
        ["generate", "-m", models["lm"], "-n", "2", "--json", "--file", str(prompts)], capsys
    )
    assert [json.loads(line)["prompt"] for line in out.splitlines()] == ["alpha", "beta"]


@pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "config.json").is_file(), reason="default model not built"
)
def test_generate_with_the_default_model(capsys):
    code, out, _ = run(["generate", "ROMEO:", "-n", "5", "--seed", "0"], capsys)
    assert code == 0 and out.startswith("ROMEO:") and len(out.strip()) > len("ROMEO:")
    code, out, _ = run(["info", "--json"], capsys)
    info = json.loads(out)
    assert info["vocab_size"] == 50257 and sum(info["files"].values()) < 17_000_000


def test_task_commands(models, capsys, monkeypatch):
    code, out, _ = run(
        ["classify", "-m", models["cls"], "--top-k", "0", "--json", "good", "bad"], capsys
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert (
        code == 0 and len(rows) == 2 and {r["label"] for r in rows[0]["labels"]} == {"neg", "pos"}
    )
    code, out, _ = run(
        ["tag", "-m", models["ner"], "--aggregation", "none", "--json", "Ann Lee"], capsys
    )
    assert code == 0 and "entities" in json.loads(out)
    code, out, _ = run(
        ["answer", "-m", models["qa"], "-q", "Who?", "-c", "Ann met Bob.", "--json"], capsys
    )
    answer = json.loads(out)["answers"][0]
    assert code == 0 and "Ann met Bob."[answer["start"] : answer["end"]] == answer["answer"]
    line = json.dumps({"question": "Where?", "context": "In Paris."})
    code, out, _ = run(["answer", "-m", models["qa"], "--json"], capsys, line + "\n", monkeypatch)
    assert code == 0 and json.loads(out)["question"] == "Where?"
    code, out, _ = run(
        ["choose", "-m", models["mc"], "Sky is", "-c", "blue", "-c", "red", "--json"], capsys
    )
    assert code == 0 and len(json.loads(out)["scores"]) == 2
    code, out, _ = run(
        ["choose", "-m", models["lm"], "Sky is", "-c", "blue", "-c", "red", "--json"], capsys
    )
    assert code == 0 and "logprobs" in json.loads(out)  # a plain LM scores zero-shot
    code, out, _ = run(
        ["classify", "-m", models["lm"], "--labels", "a,b", "--top-k", "0", "--json", "text"],
        capsys,
    )
    assert code == 0 and len(json.loads(out)["labels"]) == 2


def test_convert_dtype_and_shards(models, capsys, tmp_path):
    dst = tmp_path / "half"
    code, out, _ = run(
        [
            "convert",
            models["lm"],
            str(dst),
            "--dtype",
            "bfloat16",
            "--max-shard-size",
            "1MB",
            "--json",
        ],
        capsys,
    )
    summary = json.loads(out)
    assert code == 0 and summary["dtype"] == "bfloat16"
    assert "model.safetensors.index.json" in summary["files"] and "vocab.json" in summary["files"]
    code, out, _ = run(["info", str(dst), "--json"], capsys)
    assert json.loads(out)["dtype"] == "bfloat16"
    from gpt2kit import GPT2LMHeadModel

    a = GPT2LMHeadModel.from_pretrained(models["lm"]).eval()
    b = GPT2LMHeadModel.from_pretrained(dst).eval()
    ids = torch.tensor([[1, 2, 3]])
    assert torch.allclose(a(ids).logits, b(ids).logits, atol=0.05)


def test_errors_are_one_line(models, capsys, tmp_path):
    code, out, err = run(["info", str(tmp_path / "missing")], capsys)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, _, err = run(["tag", "-m", models["lm"], "text"], capsys)
    assert code == 1 and "GPT2ForTokenClassification" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--max-new-tokens", "many"])
    assert exit_.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="nope"):
        main(["info", str(tmp_path / "nope"), "--debug"])


def test_entry_point_subprocess(models):
    """The module entry point end to end: prompt on stdin, JSON out."""
    ok = subprocess.run(
        [sys.executable, "-m", "gpt2kit.cli", "generate", "-m", models["lm"], "-n", "2", "--json"],
        input="Hi\n",
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["prompt"] == "Hi"
