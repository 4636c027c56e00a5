"""Fine-tune a multiple-choice head on generated items; compare with zero-shot LM scoring.

python examples/multiple_choice.py [--quick] [--model gpt2]
"""

from __future__ import annotations

import json
import random

from _common import parse, train

from gpt2kit.pipelines import pipeline

PAIRS = [("It rained, so she took", "an umbrella", "a sandwich"), ("He was thirsty, so he drank", "water", "sand"),
         ("The night was dark, so they lit", "a lamp", "a cloud"), ("She was cold, so she wore", "a coat", "a spoon")]  # fmt: skip


def main() -> None:
    args = parse(__doc__.splitlines()[0])
    rng = random.Random(0)
    with (args.work / "train.jsonl").open("w") as f:
        for _ in range(32 if args.quick else 300):
            context, right, wrong = rng.choice(PAIRS)
            label = rng.randrange(2)
            choices = [right, wrong] if label == 0 else [wrong, right]
            f.write(json.dumps({"context": context, "choices": choices, "label": label}) + "\n")
    model = train(args, "multiple-choice", args.work / "train.jsonl", 150)

    choose = pipeline("multiple-choice", model=model)
    zero_shot = pipeline("zero-shot-choice")  # the embedded LM, no training
    for context, right, wrong in PAIRS[:2]:
        trained = choose(context, [wrong, right])
        scored = zero_shot(context, [wrong, right])
        print(f"{context}: trained -> {trained['text']!r}, zero-shot -> {scored['text']!r}")


if __name__ == "__main__":
    main()
