"""Fine-tune a sentiment classifier on a generated CSV, then classify new texts.

Trains `GPT2ForSequenceClassification` (task `sequence-classification`; use
`--task text-classification` for the packed variant) through `gpt2kit train`, then runs
the `text-classification` pipeline on the result.

    python examples/text_classification.py            # a tiny model that learns the task
    python examples/text_classification.py --quick    # a few steps: checks the plumbing
    python examples/text_classification.py --model gpt2   # fine-tune real GPT-2 instead
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
from pathlib import Path

from gpt2kit.cli import main as gpt2kit
from gpt2kit.pipelines import pipeline

GOOD = ["wonderful", "great", "lovely", "brilliant", "delightful", "superb"]
BAD = ["awful", "terrible", "dreadful", "boring", "horrible", "dull"]


def make_data(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for _ in range(n):
            label = rng.choice(["pos", "neg"])
            word = rng.choice(GOOD if label == "pos" else BAD)
            writer.writerow([f"The play was {word} tonight.", label])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few training steps only")
    p.add_argument(
        "--model", default=None, help="fine-tune this checkpoint instead of a tiny new model"
    )
    p.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    args = p.parse_args()

    work = Path(args.out or tempfile.mkdtemp(prefix="gpt2kit-textcls-"))
    make_data(work / "train.csv", 64 if args.quick else 400, seed=0)
    make_data(work / "dev.csv", 16 if args.quick else 100, seed=1)
    if args.model:
        model = ["--model", args.model]
    else:  # a small GPT-2 from scratch: trains in seconds on a CPU
        model = [
            "--model",
            "gpt2",
            "--from-scratch",
            "--n-layer",
            "2",
            "--n-embd",
            "64",
            "--n-head",
            "2",
            "--n-positions",
            "64",
        ]
    code = gpt2kit(
        ["train", "--task", "sequence-classification", *model,
         "--train-file", str(work / "train.csv"), "--eval-file", str(work / "dev.csv"),
         "--output-dir", str(work / "model"), "--max-steps", "4" if args.quick else "150",
         "--batch-size", "16", "--lr", "1e-3", "--no-progress"]
    )  # fmt: skip
    if code != 0:
        raise SystemExit(code)

    classify = pipeline("text-classification", model=work / "model")
    for text in ["The play was superb tonight.", "The play was dreadful tonight."]:
        result = classify(text)
        print(f"{result['label']:>4} {result['score']:.2f}  {text}")


if __name__ == "__main__":
    main()
