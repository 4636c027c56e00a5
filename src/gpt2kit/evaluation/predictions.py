"""Per-example predictions in each official scorer's input format (`gpt2kit evaluate --predictions`).

Scores printed by `gpt2kit evaluate` are only as trustworthy as the code that computed them;
writing the predictions in the format the official scripts read lets anyone re-score them
with those scripts:

| task | file written | official scorer |
|---|---|---|
| `question-answering` | `{"question id": "answer text", ...}` JSON (SQuAD `predictions.json`; `""` = no answer) | `evaluate-v1.1.py data.json predictions.json`, `evaluate-v2.0.py` |
| `token-classification` | `word gold pred` per line, a blank line after each sentence | `perl conlleval < file` |
| `sequence-`, `text-`, `document-classification` | one label name per line, in file order (regression: the value; multi-label: names joined by `,`) | GLUE-style comparison with the gold column |
| `multiple-choice` | the chosen ending's index (from 0) per line | accuracy against the label column |
| `seq2seq`, `conditional-generation` | one greedy-decoded text per line (newlines as spaces) | ROUGE / BLEU tools |

`causal-lm` has none: it reports perplexity.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..tasks import registry
from .metrics import _first, to_numpy


def _label_names(info: Mapping[str, Any], model: Any) -> dict[int, str]:
    id2label = info.get("id2label") or getattr(getattr(model, "config", None), "id2label", None)
    return {int(k): str(v) for k, v in (id2label or {}).items()}


def classification_lines(
    logits: Any, id2label: Mapping[int, str], problem_type: str | None = None
) -> list[str]:
    """One line per example: the predicted label name (or value, or names joined by `,`).

    Example:
        >>> classification_lines([[0.1, 2.0], [3.0, 0.0]], {0: "negative", 1: "positive"})
        ['positive', 'negative']
        >>> classification_lines([[1.0, -1.0, 2.0]], {0: "a", 1: "b", 2: "c"}, "multi_label_classification")
        ['a,c']
    """
    scores = to_numpy(logits)
    if problem_type == "regression" or (scores.ndim == 2 and scores.shape[1] == 1):
        return [repr(float(v)) for v in scores.reshape(-1)]
    if problem_type == "multi_label_classification":
        return [
            ",".join(id2label.get(j, str(j)) for j in np.flatnonzero(row > 0)) for row in scores
        ]
    ids = scores.argmax(-1) if scores.ndim == 2 else scores
    return [id2label.get(int(i), str(int(i))) for i in ids]


def conll_lines(
    words: list[list[str]], gold: list[list[str]], predicted: list[list[str]]
) -> list[str]:
    """conlleval's input: `word gold pred` per word, an empty line after each sentence.

    Example:
        >>> conll_lines([["Ann", "runs"]], [["B-PER", "O"]], [["B-PER", "B-PER"]])
        ['Ann B-PER B-PER', 'runs O B-PER', '']
    """
    lines = []
    for ws, gs, ps in zip(words, gold, predicted):
        for w, g, p in zip(ws, gs, ps):
            # conlleval splits on whitespace: a word must be one field
            lines.append(f"{'_'.join(str(w).split()) or '_'} {g} {p}")
        lines.append("")
    return lines


def _generate_texts(
    model: Any, tokenizer: Any, sources: list[list[int]], batch_size: int, max_new_tokens: int
) -> list[str]:
    import torch

    model.eval()
    texts: list[str] = []
    with torch.inference_mode():
        for i in range(0, len(sources), batch_size):
            chunk = [s or [tokenizer.eos_token_id] for s in sources[i : i + batch_size]]
            out = model.generate(chunk, max_new_tokens=max_new_tokens, do_sample=False)
            rows = out if chunk and isinstance(out[0], list) else [out]
            texts += [" ".join(tokenizer.decode(r, skip_special_tokens=True).split()) for r in rows]
    return texts


def write_predictions(
    path: str | Path,
    task: str,
    prediction: Any,
    info: Mapping[str, Any],
    *,
    model: Any = None,
    tokenizer: Any = None,
    dataset: Any = None,
    batch_size: int = 8,
    max_new_tokens: int = 64,
) -> int:
    """Write `task`'s predictions to `path` in its official scorer's format; returns how
    many examples were written.

    Args:
        path: the file to write.
        task: the `gpt2kit evaluate` task.
        prediction: the `EvalPrediction` the Trainer's evaluation produced over the dataset
            `load_task_data` returned (in order); unused for generation tasks.
        info: that `load_task_data` call's `info` (decoders, examples, label names).
        model, tokenizer, dataset: for generation tasks (greedy decoding of each source of
            `dataset`) and label names.
    """
    path = Path(path)
    metrics = info.get("metrics", {})
    scores = None if prediction is None else getattr(prediction, "predictions", prediction)
    entry = registry.lookup(task)
    family = entry.metric if entry is not None else None  # the task registry's metric family
    if family == "question-answering":
        answers = metrics["decode"](scores)
        path.write_text(json.dumps(answers, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return len(answers)
    if family == "token-classification":
        tags = metrics["decode"](scores)
        records = info["examples"]
        words = [list(r["words"]) for r in records]
        lines = conll_lines(words, metrics["references"], tags)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return len(tags)
    if family == "generation":
        if model is None or tokenizer is None or dataset is None:
            raise ValueError(
                f"{task} predictions are generated: pass model=, tokenizer= and dataset="
            )
        sources = [list(dataset[i]["source_ids"]) for i in range(len(dataset))]
        texts = _generate_texts(model, tokenizer, sources, batch_size, max_new_tokens)
        path.write_text("\n".join(texts) + "\n", encoding="utf-8")
        return len(texts)
    if scores is None:
        raise ValueError(f"no predictions were computed for {task}")
    if family == "multiple-choice":
        lines = [str(int(i)) for i in to_numpy(_first(scores)).argmax(-1)]
    elif family == "classification":
        lines = classification_lines(
            _first(scores), _label_names(info, model), info.get("problem_type")
        )
    else:
        raise ValueError(f"--predictions is not available for {task}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)
