"""Fine-tune extractive QA on generated SQuAD-style rows, then answer new questions.

python examples/question_answering.py [--quick] [--model gpt2]
"""

from __future__ import annotations

import json
import random

from _common import parse, train

from gpt2kit.pipelines import pipeline

PEOPLE = ["Ann", "Bob", "Cleo", "Dan", "Eve"]
PLACES = ["Paris", "Rome", "Oslo", "Lima", "Cairo"]


def main() -> None:
    args = parse(__doc__.splitlines()[0])
    rng = random.Random(0)
    with (args.work / "train.jsonl").open("w") as f:
        for i in range(48 if args.quick else 400):
            who, where = rng.choice(PEOPLE), rng.choice(PLACES)
            context = f"{who} lives in {where}. The weather is fine."
            question, answer = rng.choice(
                [(f"Where does {who} live?", where), (f"Who lives in {where}?", who)]
            )
            row = {"id": str(i), "question": question, "context": context,
                   "answers": {"text": [answer], "answer_start": [context.index(answer)]}}  # fmt: skip
            f.write(json.dumps(row) + "\n")
    model = train(
        args,
        "question-answering",
        args.work / "train.jsonl",
        300,
        "--max-length",
        "160",
        positions=160,
    )

    qa = pipeline("question-answering", model=model)
    context = "Cleo lives in Lima. The weather is fine."
    for question in ["Where does Cleo live?", "Who lives in Lima?"]:
        a = qa(question=question, context=context)
        print(f"{question} -> {a['answer']!r} [{a['start']}:{a['end']}] {a['score']:.2f}")


if __name__ == "__main__":
    main()
