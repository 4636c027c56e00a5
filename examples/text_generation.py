"""Train a small causal LM on a generated text file, generate from it, and use an LM zero-shot.

    python examples/text_generation.py [--quick] [--model gpt2]

The second half needs no training: the embedded Tiny Shakespeare model continues a
prompt (streamed), and classifies a line zero-shot by scoring a hypothesis per label.
"""

from __future__ import annotations

import random

from _common import parse, train

from gpt2kit.pipelines import pipeline


def main() -> None:
    args = parse(__doc__.splitlines()[0])
    rng = random.Random(0)
    names = ["ROMEO", "JULIET", "NURSE"]
    lines = [
        f"{rng.choice(names)}:\nI count to {' '.join(str(i) for i in range(rng.randrange(1, 6)))}.\n"
        for _ in range(400)
    ]
    (args.work / "corpus.txt").write_text("\n".join(lines))
    model = train(
        args, "causal-lm", args.work / "corpus.txt", 200, "--block-size", "32", positions=64
    )
    generate = pipeline("text-generation", model=model)
    print(generate("ROMEO:\n", max_new_tokens=12, do_sample=False)[0]["generated_text"])

    shakespeare = pipeline("text-generation")  # the embedded model
    for piece in shakespeare("JULIET:", stream=True, max_new_tokens=20, seed=0):
        print(piece, end="", flush=True)
    print()
    zero_shot = pipeline("zero-shot-classification")
    out = zero_shot("Now is the winter of our discontent", candidate_labels=["sorrow", "joy"])
    print(list(zip(out["labels"], [round(s, 3) for s in out["scores"]])))


if __name__ == "__main__":
    main()
