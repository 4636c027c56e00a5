"""`gpt2kit train` / `gpt2kit evaluate` end to end on small files the test writes."""

from __future__ import annotations

import json
import random

import pytest

from gpt2kit.cli.train import TrainCLIError, main

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [
    "--model",
    "gpt2",
    "--from-scratch",
    "--n-layer",
    "2",
    "--n-embd",
    "32",
    "--n-head",
    "4",
    "--n-positions",
    "64",
]
QUIET = ["--no-progress", "--seed", "0"]


def write_sentiment(path, n: int, seed: int) -> None:
    """Label = whether the sentence holds a positive or a negative word: learnable from one token."""
    rng = random.Random(seed)
    fillers = [
        "the",
        "a",
        "movie",
        "film",
        "plot",
        "was",
        "really",
        "quite",
        "very",
        "and",
        "it",
        "story",
        "acting",
    ]
    rows = ["text,label"]
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        word = rng.choice(
            ["great", "wonderful", "superb"] if label == "pos" else ["awful", "terrible", "boring"]
        )
        words = rng.sample(fillers, 5)
        words.insert(rng.randrange(6), word)
        rows.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(rows) + "\n")


def test_sequence_classification_train_and_evaluate(tmp_path, capsys):
    train, dev, out = tmp_path / "train.csv", tmp_path / "dev.csv", tmp_path / "out"
    write_sentiment(train, 256, seed=0)
    write_sentiment(dev, 64, seed=1)
    argv = ["train", "--task", "sequence-classification", *TINY, "--train-file", str(train)]
    argv += [
        "--eval-file",
        str(dev),
        "--output-dir",
        str(out),
        "--max-steps",
        "120",
        "--lr",
        "3e-3",
    ]
    argv += [
        "--batch-size",
        "16",
        "--warmup-steps",
        "10",
        "--eval-steps",
        "60",
        "--metric-for-best-model",
        "accuracy",
    ]
    assert main(argv + QUIET) == 0
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert (out / "vocab.json").is_file() or (out / "tokenizer.json").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["GPT2ForSequenceClassification"]
    assert set(config["id2label"].values()) == {"neg", "pos"}
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "eval_accuracy" in r] == [60, 120]

    report = tmp_path / "metrics.json"
    argv = [
        "evaluate",
        "--task",
        "sequence-classification",
        "--model",
        str(out),
        "--eval-file",
        str(dev),
    ]
    assert main(argv + ["--json", str(report)]) == 0
    metrics = json.loads(report.read_text())
    assert metrics["accuracy"] >= 0.9, metrics
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.slow  # ~1 min on a shared 2-core CPU: 50257-way logits dominate
def test_causal_lm_from_scratch_with_config_file(tmp_path):
    corpus = tmp_path / "corpus.txt"
    rng = random.Random(0)
    lines = [
        " ".join(rng.choice(["to be", "or not", "that is", "the question"]) for _ in range(8))
        for _ in range(300)
    ]
    corpus.write_text("\n".join(lines) + "\n")
    config = tmp_path / "run.json"
    config.write_text(
        json.dumps(
            {"max-steps": 40, "lr": 3e-3, "batch_size": 8, "block-size": 32, "logging-steps": 5}
        )
    )
    out = tmp_path / "lm"
    argv = [
        "train",
        "--task",
        "causal-lm",
        *TINY,
        "--train-file",
        str(corpus),
        "--output-dir",
        str(out),
    ]
    assert main(argv + ["--config", str(config)] + QUIET) == 0
    results = json.loads((out / "train_results.json").read_text())
    assert results["steps"] == 40
    assert results["eval_loss"] < 7.5  # from ~10.8 (uniform over 50257 tokens)
    assert results["eval_perplexity"] == pytest.approx(
        2.718281828 ** results["eval_loss"], rel=1e-6
    )
    from gpt2kit import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(out)
    assert model.config.n_layer == 2


def test_resume_flag_and_errors(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world, hello there. " * 200)
    out = tmp_path / "lm"
    base = [
        "train",
        "--task",
        "causal-lm",
        *TINY,
        "--train-file",
        str(corpus),
        "--output-dir",
        str(out),
    ]
    base += ["--block-size", "16", "--lr", "1e-3", *QUIET]
    assert main(base + ["--max-steps", "4", "--save-steps", "2"]) == 0
    assert main(base + ["--max-steps", "6", "--resume"]) == 0  # continues from checkpoint-4
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if '"loss"' in x]
    assert log[-1]["step"] == 6

    with pytest.raises(TrainCLIError, match="--train-file"):
        main(["train", "--task", "causal-lm", "--model", "gpt2", "--output-dir", str(out)])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"learning_rate": 1.0}))
    with pytest.raises(TrainCLIError, match="unknown option 'learning_rate'"):
        main(base + ["--config", str(bad)])
    with pytest.raises(TrainCLIError, match="only with --from-scratch"):
        main(
            [
                "train",
                "--task",
                "causal-lm",
                "--model",
                str(out),
                "--n-layer",
                "3",
                "--train-file",
                str(corpus),
                "--output-dir",
                str(out),
            ]
        )
