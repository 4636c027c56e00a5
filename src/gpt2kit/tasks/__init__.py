"""Task pre- and post-processing that needs a tokenizer but no model, and the task registry.

- `registry`: every task name gpt2kit knows (imports nothing, not even torch).
- `token_alignment`: word labels <-> BPE pieces (token classification).
- `qa`: windowed question-first features, span decoding, SQuAD v2 no-answer.
- `multiple_choice`: the `[B, C, T]` collator.

Names load lazily so that reading the registry (`gpt2kit --help` builds `--task` choices
from it) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MultipleChoiceCollator": "multiple_choice",
    "QAFeature": "qa",
    "QAPrediction": "qa",
    "collate_qa_features": "qa",
    "decode_spans": "qa",
    "prepare_qa_features": "qa",
    "align_labels_with_tokens": "token_alignment",
    "tokenize_and_align_labels": "token_alignment",
    "word_predictions": "token_alignment",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gpt2kit.tasks' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, "registry"})
