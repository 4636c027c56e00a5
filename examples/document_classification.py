"""Fine-tune a long-document classifier (windows + aggregation) on generated documents.

    python examples/document_classification.py [--quick] [--model gpt2]

Documents are longer than the model's 64-token context; the label depends on a word that
may sit anywhere in them, so the model must read every window.
"""

from __future__ import annotations

import csv
import random

from _common import parse, train

from gpt2kit.pipelines import pipeline

FILLER = ["the", "report", "continues", "with", "tables", "and", "notes", "and", "more", "notes"]


def document(rng: random.Random, label: str) -> str:
    words = [rng.choice(FILLER) for _ in range(100)]
    words[rng.randrange(len(words))] = "profit" if label == "good" else "loss"
    return " ".join(words)


def main() -> None:
    args = parse(__doc__.splitlines()[0])
    rng = random.Random(0)
    with (args.work / "train.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for _ in range(8 if args.quick else 200):
            label = rng.choice(["good", "bad"])
            writer.writerow([document(rng, label), label])
    model = train(args, "document-classification", args.work / "train.csv", 150, positions=64)

    classify = pipeline("document-classification", model=model)
    for label in ["good", "bad"]:
        result = classify(document(random.Random(7), label))
        print(f"true {label:>4} -> {result['label']} {result['score']:.2f}")


if __name__ == "__main__":
    main()
