"""Fine-tune a tagger (NER) on a generated CoNLL file, then tag new sentences.

python examples/token_classification.py [--quick] [--model gpt2]
"""

from __future__ import annotations

import random

from _common import parse, train

from gpt2kit.pipelines import pipeline

PEOPLE = ["Ann", "Bob", "Cleo", "Dan", "Eve"]
PLACES = ["Paris", "Rome", "Oslo", "Lima", "Cairo"]


def main() -> None:
    args = parse(__doc__.splitlines()[0])
    rng = random.Random(0)
    lines = []
    for _ in range(48 if args.quick else 400):
        who, where = rng.choice(PEOPLE), rng.choice(PLACES)
        for word, tag in [(who, "B-PER"), ("flew", "O"), ("to", "O"), (where, "B-LOC"), (".", "O")]:
            lines.append(f"{word} {tag}")
        lines.append("")
    (args.work / "train.conll").write_text("\n".join(lines) + "\n")
    model = train(args, "token-classification", args.work / "train.conll", 200)

    tag = pipeline("token-classification", model=model, aggregation_strategy="first")
    for text in ["Eve flew to Oslo .", "Dan flew to Cairo ."]:
        ents = tag(text)
        print(text, "->", [(e["entity_group"], e["word"], e["start"], e["end"]) for e in ents])


if __name__ == "__main__":
    main()
