"""Every task trains end to end through `gpt2kit train` and scores high with `gpt2kit evaluate`.

Each test writes a small data set in the task's real file format (CSV, TSV, JSONL, CoNLL,
SQuAD JSON, SWAG-shaped JSONL, plain text) for a synthetic task that a model can only solve
by reading the input (a keyword anywhere in a long text, entity types from word lists with
multi-token entities, the name after a cue word among distractor names, the ending consistent
with the context, copying word lists through a word mapping, a small grammar), trains a tiny
GPT-2 from scratch through the command line, evaluates it on a disjoint held-out file with
`gpt2kit evaluate --json`, and asserts a high score from that JSON.

The data and the model share one seed: `GPT2KIT_TEST_SEED=3 pytest tests/test_train_cli_tasks.py
-m ''` runs the same tests on other data and another initialization (how the thresholds
were checked across seeds). Language-model heads compute 50257-way logits, so the
generation and LM tests are the slow ones.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
from pathlib import Path
from typing import Any

import pytest

from gpt2kit.cli import main

# 10-70 s each on a shared 2-core CPU: all in the slow set (CI runs it).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

SEED = int(os.environ.get("GPT2KIT_TEST_SEED", "0"))


def tiny(n_embd: int = 32, n_positions: int = 64, n_layer: int = 2, n_head: int = 4) -> list[str]:
    """A from-scratch GPT-2 small enough to train in seconds on a CPU."""
    return ["--model", "gpt2", "--from-scratch", "--n-layer", str(n_layer), "--n-embd",
            str(n_embd), "--n-head", str(n_head), "--n-positions", str(n_positions)]  # fmt: skip


def train_and_evaluate(
    tmp_path: Path,
    task: str,
    train: Path,
    dev: Path,
    *options: str,
    model: list[str] | None = None,
    eval_options: tuple[str, ...] = (),
) -> dict[str, Any]:
    """`gpt2kit train` on `train` (evaluating on `dev`), then `gpt2kit evaluate --json` on
    `dev`; returns the evaluation JSON."""
    out = tmp_path / "model"
    argv = ["train", "--task", task, *(model or tiny()), "--train-file", str(train),
            "--eval-file", str(dev), "--output-dir", str(out), "--no-progress",
            "--seed", str(SEED), "--logging-steps", "50", *options]  # fmt: skip
    assert main(argv) == 0
    report = tmp_path / "metrics.json"
    # Same batches as the evaluation that ends training (packed rows weigh the mean loss).
    batch = options[options.index("--batch-size") + 1] if "--batch-size" in options else "8"
    argv = ["evaluate", "--task", task, "--model", str(out), "--eval-file", str(dev),
            "--batch-size", batch, "--json", str(report), *eval_options]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads(report.read_text())
    print(f"SCORE {task} seed={SEED}: {json.dumps(metrics)}")
    trained = json.loads((out / "train_results.json").read_text())
    # The evaluation at the end of training saw the same file and the same model.
    for key, value in metrics.items():
        if key != "runtime" and f"eval_{key}" in trained:
            assert trained[f"eval_{key}"] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    return metrics


def split(make: Any, n_train: int, n_dev: int, seed: int) -> tuple[list[Any], list[Any]]:
    """`n_train` + `n_dev` distinct examples from `make(rng)`; train and dev are disjoint."""
    rng, seen, rows = random.Random(seed), set(), []
    while len(rows) < n_train + n_dev:
        row = make(rng)
        key = json.dumps(row, sort_keys=True)
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return rows[:n_train], rows[n_train:]


def write_table(path: Path, rows: list[dict[str, Any]], delimiter: str = ",") -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


FILLERS = [
    *[
        "the",
        "a",
        "one",
        "this",
        "that",
        "it",
        "was",
        "is",
        "and",
        "but",
        "then",
        "so",
        "very",
        "quite",
        "still",
        "just",
        "later",
    ],
    *["again", "today", "here", "there", "some", "many", "old", "new", "big", "small"],
]


# -- classification ------------------------------------------------------------------------------
COLORS = ["red", "blue", "green", "yellow", "black", "white"]


def color_row(rng: random.Random) -> dict[str, Any]:
    """A 10-20 word sentence with one color word anywhere; the label is that color."""
    words = [rng.choice(FILLERS) for _ in range(rng.randint(10, 20))]
    color = rng.choice(COLORS[:3])
    words.insert(rng.randrange(len(words) + 1), color)
    return {"sentence": " ".join(words), "label": color}


def test_sequence_classification_tsv_keyword_anywhere(tmp_path):
    train, dev = split(color_row, 1000, 200, SEED)
    metrics = train_and_evaluate(
        tmp_path, "sequence-classification",
        write_table(tmp_path / "train.tsv", train, "\t"), write_table(tmp_path / "dev.tsv", dev, "\t"),
        "--max-steps", "200", "--batch-size", "16", "--lr", "3e-3", "--warmup-steps", "10",
    )  # fmt: skip
    assert metrics["accuracy"] >= 0.9, metrics  # chance: 1/3


TOPICS = {
    "animal": ["dog", "cat", "horse", "bird", "fish"],
    "vehicle": ["car", "bus", "truck", "train", "boat"],
    "none": [],
}


def topic_row(rng: random.Random) -> dict[str, Any]:
    """A 12-24 word text; its label is the topic of the one keyword hidden anywhere in it."""
    label = rng.choice(sorted(TOPICS))
    words = [rng.choice(FILLERS) for _ in range(rng.randint(12, 24))]
    if TOPICS[label]:
        words.insert(rng.randrange(len(words) + 1), rng.choice(TOPICS[label]))
    return {"text": " ".join(words), "label": label}


def test_text_classification_csv_keyword_anywhere(tmp_path):
    train, dev = split(topic_row, 800, 150, SEED)
    metrics = train_and_evaluate(
        tmp_path, "text-classification",
        write_table(tmp_path / "train.csv", train), write_table(tmp_path / "dev.csv", dev),
        "--max-steps", "200", "--batch-size", "16", "--lr", "3e-3", "--warmup-steps", "10",
    )  # fmt: skip
    assert metrics["accuracy"] >= 0.9, metrics  # chance: 1/3


def document_row(rng: random.Random) -> dict[str, Any]:
    """An 80-120 word document (two to four 64-token windows): urgent iff it holds "alarm"
    (three times, anywhere)."""
    words = [rng.choice(FILLERS) for _ in range(rng.randint(80, 120))]
    urgent = rng.random() < 0.5
    for _ in range(3 if urgent else 0):
        words.insert(rng.randrange(len(words) + 1), "alarm")
    return {"text": " ".join(words), "label": "urgent" if urgent else "routine"}


def test_document_classification_jsonl_long_documents(tmp_path):
    train, dev = split(document_row, 300, 80, SEED)
    metrics = train_and_evaluate(
        tmp_path, "document-classification",
        write_jsonl(tmp_path / "train.jsonl", train), write_jsonl(tmp_path / "dev.jsonl", dev),
        "--max-steps", "200", "--batch-size", "8", "--lr", "2e-3", "--warmup-steps", "10",
    )  # fmt: skip
    assert metrics["accuracy"] >= 0.9, metrics  # chance: 0.5


# -- token classification --------------------------------------------------------------------------
ENTITIES = {
    "PER": ["Anna", "Peter", "Maria", "John Smith", "Laura Jones", "Mark Brown"],
    "LOC": ["Paris", "London", "Berlin", "New York", "San Diego", "Hong Kong"],
    "ORG": ["Google", "Intel", "Acme Corp", "General Motors", "Red Cross"],
}
TAG_FILLERS = [
    "said",
    "that",
    "met",
    "in",
    "at",
    "from",
    "with",
    "for",
    "visited",
    "joined",
    "and",
    "the",
    "today",
    "yesterday",
]


def tagged_sentence(rng: random.Random) -> list[tuple[str, str]]:
    """Filler words and 1-3 entities (one or two words each) with IOB2 tags."""
    pairs = [(w, "O") for w in rng.sample(TAG_FILLERS, rng.randint(4, 8))]
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(sorted(ENTITIES))
        words = rng.choice(ENTITIES[kind]).split()
        span = [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(words)]
        at = rng.randrange(len(pairs) + 1)
        while at < len(pairs) and pairs[at][1].startswith("I-"):
            at += 1  # never split an entity
        pairs[at:at] = span
    return pairs


def write_conll(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    lines = ["-DOCSTART- O", ""]
    for sentence in sentences:
        lines += [f"{w} {t}" for w, t in sentence] + [""]
    path.write_text("\n".join(lines))
    return path


def test_token_classification_conll_multi_word_entities(tmp_path):
    train, dev = split(tagged_sentence, 600, 120, SEED)
    metrics = train_and_evaluate(
        tmp_path, "token-classification",
        write_conll(tmp_path / "train.conll", train), write_conll(tmp_path / "dev.conll", dev),
        "--max-steps", "200", "--batch-size", "16", "--lr", "3e-3", "--warmup-steps", "10",
    )  # fmt: skip
    assert metrics["entity_f1"] >= 0.9, metrics
    assert min(metrics[f"{t}_f1"] for t in ENTITIES) >= 0.8, metrics


# -- question answering ----------------------------------------------------------------------------
NAMES = ["Anna", "Peter", "Maria", "John", "Laura", "Mark", "Sarah", "David", "Emma", "Paul"]


def qa_row(rng: random.Random) -> dict[str, Any]:
    """Three names among filler words; the answer is the one after the cue "captain is",
    wherever it stands."""
    names = rng.sample(NAMES, 3)
    words = [rng.choice(FILLERS) for _ in range(rng.randint(6, 14))]
    for name in names[1:]:
        words.insert(rng.randrange(len(words) + 1), name)  # distractors
    at = rng.randrange(len(words) + 1)
    context = " ".join([*words[:at], "the captain is", names[0], *words[at:]]) + " ."
    start = len(" ".join([*words[:at], "the captain is"])) + 1
    assert context[start:].startswith(names[0])
    return {"question": "Who is the captain?", "context": context,
            "answer": names[0], "answer_start": start}  # fmt: skip


def write_squad(path: Path, rows: list[dict[str, Any]]) -> Path:
    """SQuAD v1.1 layout: data -> paragraphs -> qas with character offsets."""
    paragraphs = [
        {"context": r["context"],
         "qas": [{"id": f"q{i}", "question": r["question"],
                  "answers": [{"text": r["answer"], "answer_start": r["answer_start"]}]}]}
        for i, r in enumerate(rows)
    ]  # fmt: skip
    data = {"version": "1.1", "data": [{"title": "synthetic", "paragraphs": paragraphs}]}
    path.write_text(json.dumps(data))
    return path


def test_question_answering_squad_json(tmp_path):
    train, dev = split(qa_row, 800, 150, SEED)
    metrics = train_and_evaluate(
        tmp_path, "question-answering",
        write_squad(tmp_path / "train.json", train), write_squad(tmp_path / "dev.json", dev),
        "--max-steps", "150", "--batch-size", "16", "--lr", "3e-3", "--warmup-steps", "20",
    )  # fmt: skip
    assert metrics["exact_match"] >= 0.85 and metrics["f1"] >= 0.85, metrics  # fractions


# -- multiple choice -------------------------------------------------------------------------------
def swag_row(rng: random.Random) -> dict[str, Any]:
    """SWAG columns: the context gives a thing a color after filler words; the consistent
    ending repeats that color, the three distractors are other colors."""
    colors = rng.sample(COLORS, 4)
    thing = rng.choice(["car", "hat", "house", "ball", "door"])
    words = [*rng.sample(FILLERS, rng.randint(1, 4)), f"the {thing} is {colors[0]}"]
    endings = colors[:]
    rng.shuffle(endings)
    return {"sent1": " ".join(words) + " .", "sent2": f"so the {thing} looks",
            **{f"ending{i}": c for i, c in enumerate(endings)}, "label": endings.index(colors[0])}  # fmt: skip


def test_multiple_choice_swag_jsonl(tmp_path):
    train, dev = split(swag_row, 800, 150, SEED)
    metrics = train_and_evaluate(
        tmp_path, "multiple-choice",
        write_jsonl(tmp_path / "train.jsonl", train), write_jsonl(tmp_path / "dev.jsonl", dev),
        "--max-steps", "300", "--batch-size", "16", "--lr", "3e-3", "--warmup-steps", "30",
        model=tiny(n_embd=64),
    )  # fmt: skip
    assert metrics["accuracy"] >= 0.9, metrics  # chance: 0.25


# -- generation ------------------------------------------------------------------------------------
WORDS = ["red", "green", "blue", "cat", "dog", "sun", "moon", "tree"]
MAPPED = {"red": "apple", "green": "grass", "blue": "sky", "cat": "milk", "dog": "bone",
          "sun": "day", "moon": "night", "tree": "wood"}  # fmt: skip


def mapped_row(rng: random.Random) -> dict[str, Any]:
    """Copy 4 words (repeats allowed), mapping each through `MAPPED`: the target's i-th
    word depends on the source's i-th word only, so the model must align positions."""
    words = [rng.choice(WORDS) for _ in range(4)]
    return {"source": " ".join(words), "target": " ".join(MAPPED[w] for w in words)}


# cross-attention learns to align more slowly than the decoder-only model's self-attention
GENERATION_STEPS = {
    "seq2seq": ["--max-steps", "150", "--lr", "1e-2"],
    "conditional-generation": ["--max-steps", "300", "--lr", "3e-3"],
}


@pytest.mark.parametrize("task", ["seq2seq", "conditional-generation"])
def test_generation_jsonl_copy_with_mapping(tmp_path, task):
    train, dev = split(mapped_row, 1500, 100, SEED)
    metrics = train_and_evaluate(
        tmp_path, task,
        write_jsonl(tmp_path / "train.jsonl", train), write_jsonl(tmp_path / "dev.jsonl", dev),
        *GENERATION_STEPS[task], "--batch-size", "16", "--warmup-steps", "15",
        model=tiny(n_embd=64) if task == "conditional-generation" else None,
    )  # fmt: skip
    # Teacher-forced over the target tokens (and EOS): the uniform baseline is 50257, and
    # guessing among the 8 target words would be 8.
    assert metrics["token_accuracy"] >= 0.9 and metrics["perplexity"] < 2.0, metrics


# -- language modeling -----------------------------------------------------------------------------
def grammar_line(rng: random.Random) -> str:
    """`the <adj> <noun> <verb> the <adj> <noun> .`: 4 choices per slot, the rest fixed."""

    def noun_phrase() -> str:
        return f"the {rng.choice(['big', 'small', 'old', 'new'])} {rng.choice(['cat', 'dog', 'bird', 'fish'])}"

    return f"{noun_phrase()} {rng.choice(['sees', 'likes', 'finds', 'helps'])} {noun_phrase()} ."


def test_causal_lm_plain_text_grammar(tmp_path):
    rng = random.Random(SEED)
    train, dev = tmp_path / "train.txt", tmp_path / "dev.txt"
    train.write_text("\n".join(grammar_line(rng) for _ in range(600)) + "\n")
    dev.write_text("\n".join(grammar_line(rng) for _ in range(60)) + "\n")
    metrics = train_and_evaluate(
        tmp_path, "causal-lm", train, dev,
        "--max-steps", "150", "--batch-size", "8", "--block-size", "32", "--lr", "1e-2",
        "--warmup-steps", "10", eval_options=("--max-length", "32"),  # the training blocks
    )  # fmt: skip
    # Per token: 5 of 9 positions pick among 4 words, the rest are determined, so the best
    # model reaches about 4 ** (5 / 9) = 2.2; uniform over the ~16 tokens used is ~16, over
    # the vocabulary 50257.
    assert metrics["perplexity"] < 4.0, metrics
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]), rel=1e-6)
