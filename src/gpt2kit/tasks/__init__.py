"""Task pre- and post-processing that needs a tokenizer but no model.

- `token_alignment`: word labels <-> BPE pieces (token classification).
- `qa`: windowed question-first features, span decoding, SQuAD v2 no-answer.
- `multiple_choice`: the `[B, C, T]` collator.
"""

from .multiple_choice import MultipleChoiceCollator
from .qa import QAFeature, QAPrediction, collate_qa_features, decode_spans, prepare_qa_features
from .token_alignment import align_labels_with_tokens, tokenize_and_align_labels, word_predictions

__all__ = [
    "MultipleChoiceCollator",
    "QAFeature",
    "QAPrediction",
    "align_labels_with_tokens",
    "collate_qa_features",
    "decode_spans",
    "prepare_qa_features",
    "tokenize_and_align_labels",
    "word_predictions",
]
