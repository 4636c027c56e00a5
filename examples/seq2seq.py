"""Fine-tune a decoder-only seq2seq model (reverse a word list), then generate targets.

    python examples/seq2seq.py [--quick] [--model gpt2] [--encoder-decoder]

`--encoder-decoder` trains `GPT2ForConditionalGeneration` (task conditional-generation)
instead of `GPT2ForSequenceToSequence`; both run in the `text2text` pipeline.
"""

from __future__ import annotations

import json
import random
import sys

from _common import parse, train

from gpt2kit.pipelines import pipeline

WORDS = ["red", "green", "blue", "cat", "dog", "sun", "moon", "tree"]


def main() -> None:
    encoder_decoder = "--encoder-decoder" in sys.argv
    if encoder_decoder:
        sys.argv.remove("--encoder-decoder")
    args = parse(__doc__.splitlines()[0])
    rng = random.Random(0)
    with (args.work / "train.jsonl").open("w") as f:
        for _ in range(48 if args.quick else 600):
            words = rng.sample(WORDS, 3)
            f.write(
                json.dumps({"source": " ".join(words), "target": " ".join(reversed(words))}) + "\n"
            )
    task = "conditional-generation" if encoder_decoder else "seq2seq"
    model = train(args, task, args.work / "train.jsonl", 300, "--max-length", "32", positions=64)

    reverse = pipeline("text2text", model=model, max_new_tokens=6, do_sample=False)
    for source in ["sun dog red", "tree cat blue"]:
        print(f"{source} -> {reverse(source)['generated_text']!r}")


if __name__ == "__main__":
    main()
