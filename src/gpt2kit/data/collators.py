"""Collators: a list of featurized examples -> one batch dict keyed by forward argument names.

Every collator pads dynamically (to the longest example of the batch, not a fixed length),
gives `attention_mask` (1 = real token) and puts `-100` on label positions that must not be
scored. The task-specific layouts are those of `gpt2kit.tasks` and are reused from there:

| collator | for | batch keys |
|---|---|---|
| `DataCollatorWithPadding` | sequence classification, LM | `input_ids`, `attention_mask`, `labels` |
| `PackedTextCollator` | `GPT2ForTextClassification` | packed `input_ids [R, L]`, 4-D `attention_mask`, `position_ids`, `text_spans`, `labels` |
| `DocumentCollator` | `GPT2ForDocumentClassification` | `documents` (id lists), `labels` |
| `TokenClassificationCollator` | token classification | `input_ids`, `attention_mask`, `labels [B, T]` on BPE pieces |
| `QACollator` | question answering | `input_ids`, `attention_mask`, `start_positions`, `end_positions` |
| `tasks.multiple_choice.MultipleChoiceCollator` | multiple choice | `[B, C, T]` `input_ids`, `attention_mask`, `mc_token_ids`, `labels` |
| `tasks.seq2seq.Seq2SeqCollator` / `EncoderDecoderCollator` | seq2seq / conditional generation | see there |

Every collator is a plain picklable object, so `DataLoader(num_workers>0)` works.

Example:
    >>> collate = DataCollatorWithPadding(pad_token_id=0)
    >>> batch = collate([{"input_ids": [5, 6, 7], "label": 1}, {"input_ids": [8], "label": 0}])
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist(), batch["labels"].tolist()
    ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]], [1, 0])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..tasks.packing import pack_texts
from ..tasks.qa import QAFeature, collate_qa_features
from ..tasks.token_alignment import align_labels_with_tokens

IGNORE_INDEX = -100
# Per-token keys and the value their pads get.
_SEQUENCE_KEYS = {"input_ids": None, "attention_mask": 0, "token_type_ids": 0, "position_ids": 0}


def _labels_tensor(labels: list[Any]) -> torch.Tensor:
    """Scalar class ids -> long `[B]`; floats -> float `[B]`; lists (multi-label) -> `[B, K]`."""
    first = labels[0]
    if isinstance(first, (list, tuple)) or (isinstance(first, torch.Tensor) and first.dim() > 0):
        return torch.tensor([list(map(float, x)) for x in labels], dtype=torch.float)
    if all(
        isinstance(x, int) or (isinstance(x, torch.Tensor) and not x.is_floating_point())
        for x in labels
    ):
        return torch.tensor([int(x) for x in labels], dtype=torch.long)
    return torch.tensor([float(x) for x in labels], dtype=torch.float)


class DataCollatorWithPadding:
    """Pad `input_ids` (and `attention_mask`, `token_type_ids`, `position_ids`) to the
    longest example; batch per-example labels.

    Args:
        pad_token_id: id put on pads (masked out, so any id works; GPT-2 uses EOS).
        padding_side: `"right"` (training) or `"left"`.
        pad_to_multiple_of: round the padded length up (tensor-core friendly shapes).
        lm_labels: with no `labels` in the examples, use `input_ids` as `labels` (causal LM;
            the model shifts them), `-100` on pads.

    Labels: `label`/`labels` per example: an int (class), a float (regression), a list of
    floats (multi-label; `[B, K]`), or, with `sequence_labels`, a list per token (padded
    with -100).

    Example:
        >>> c = DataCollatorWithPadding(pad_token_id=50256, padding_side="left", lm_labels=True)
        >>> c([{"input_ids": [1, 2]}, {"input_ids": [3]}])["labels"].tolist()
        [[1, 2], [-100, 3]]
    """

    def __init__(
        self,
        pad_token_id: int = 0,
        padding_side: str = "right",
        pad_to_multiple_of: int | None = None,
        lm_labels: bool = False,
        sequence_labels: bool = False,
    ) -> None:
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side={padding_side!r}; use 'left' or 'right'")
        self.pad_token_id = pad_token_id
        self.padding_side = padding_side
        self.pad_to_multiple_of = pad_to_multiple_of
        self.lm_labels = lm_labels
        self.sequence_labels = sequence_labels or lm_labels

    def _pad(self, rows: list[Any], value: int, length: int) -> torch.Tensor:
        out = torch.full((len(rows), length), value, dtype=torch.long)
        for r, row in enumerate(rows):
            row = torch.as_tensor(list(row), dtype=torch.long)
            n = row.numel()
            if n == 0:
                continue
            if self.padding_side == "left":
                out[r, length - n :] = row
            else:
                out[r, :n] = row
        return out

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty list of examples")
        length = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch: dict[str, torch.Tensor] = {}
        for key, pad in _SEQUENCE_KEYS.items():
            if key in features[0]:
                batch[key] = self._pad(
                    [f[key] for f in features], self.pad_token_id if pad is None else pad, length
                )
        if "attention_mask" not in batch:
            batch["attention_mask"] = self._pad(
                [[1] * len(f["input_ids"]) for f in features], 0, length
            )
        label_key = (
            "labels" if "labels" in features[0] else "label" if "label" in features[0] else None
        )
        if label_key is not None:
            labels = [f[label_key] for f in features]
            if self.sequence_labels:
                batch["labels"] = self._pad(labels, IGNORE_INDEX, length)
            else:
                batch["labels"] = _labels_tensor(labels)
        elif self.lm_labels:
            batch["labels"] = batch["input_ids"].masked_fill(
                batch["attention_mask"] == 0, IGNORE_INDEX
            )
        return batch


class TokenClassificationCollator:
    """Tokenize pre-split words and put word labels on BPE pieces (`tasks.token_alignment`).

    Examples are `{"words": [...], "labels": [class id per word]}` (labels optional).

    Args:
        tokenizer: a `GPT2Tokenizer`.
        label_pieces: `"first"`, `"last"` or `"all"` pieces of a word carry its label.
        b_to_i: with `"all"`, `{B-X id: I-X id}` so continuation pieces are `I-X`.
        max_length: truncate longer sentences (their cut words lose their labels).

    Example:
        >>> from gpt2kit.tokenizer import GPT2Tokenizer
        >>> c = TokenClassificationCollator(GPT2Tokenizer.from_pretrained("gpt2"))
        >>> c([{"words": ["New-York", "is"], "labels": [1, 0]}])["labels"].tolist()
        [[1, -100, -100, 0]]
    """

    def __init__(
        self,
        tokenizer: Any,
        label_pieces: str = "first",
        b_to_i: Mapping[int, int] | None = None,
        max_length: int | None = None,
    ) -> None:
        self.tokenizer, self.label_pieces, self.b_to_i, self.max_length = (
            tokenizer,
            label_pieces,
            b_to_i,
            max_length,
        )

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            [list(f["words"]) for f in features],
            is_split_into_words=True,
            padding=True,
            truncation=self.max_length is not None,
            max_length=self.max_length,
            return_tensors="pt",
        )
        batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if all("labels" in f for f in features):
            rows = [
                align_labels_with_tokens(
                    enc.word_ids(i), f["labels"], self.label_pieces, self.b_to_i
                )
                for i, f in enumerate(features)
            ]
            batch["labels"] = torch.tensor(rows, dtype=torch.long)
        return batch


class QACollator:
    """Right-pad `tasks.qa.QAFeature` windows (question, SEP, context window) into a batch.

    Example:
        >>> from gpt2kit.tasks.qa import QAFeature
        >>> QACollator(0)([QAFeature(0, [5, 6, 7], [None, None, (0, 2)], 1, 2, 2)])["start_positions"].tolist()
        [2]
    """

    def __init__(self, pad_token_id: int = 0) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[QAFeature]) -> dict[str, torch.Tensor]:
        return collate_qa_features(features, self.pad_token_id)


class PackedTextCollator:
    """Pack a batch of short texts into few rows (`tasks.packing.pack_texts`) for
    `GPT2ForTextClassification`: no compute is spent on padding.

    Examples are `{"input_ids": [...], "label": ...}`.

    Args:
        pack_length: tokens per packed row (the model's `pack_length`).
        pad_token_id: id of the filler after a row's last text.

    Example:
        >>> b = PackedTextCollator(8)([{"input_ids": [5, 6, 7], "label": 1}, {"input_ids": [8, 9], "label": 0}])
        >>> b["input_ids"].tolist(), b["text_spans"].tolist(), b["labels"].tolist()
        ([[5, 6, 7, 8, 9]], [[0, 0, 3], [0, 3, 5]], [1, 0])
    """

    def __init__(self, pack_length: int, pad_token_id: int = 0) -> None:
        self.pack_length, self.pad_token_id = pack_length, pad_token_id

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        packed = pack_texts(
            [list(f["input_ids"]) for f in features], self.pack_length, self.pad_token_id
        )
        batch = {
            "input_ids": packed.input_ids,
            "attention_mask": packed.attention_mask,
            "position_ids": packed.position_ids,
            "text_spans": packed.spans,
        }
        key = "labels" if "labels" in features[0] else "label" if "label" in features[0] else None
        if key is not None:
            batch["labels"] = _labels_tensor([f[key] for f in features])
        return batch


class DocumentCollator:
    """Batch whole documents as id lists for `GPT2ForDocumentClassification` (the model
    windows them itself, so nothing is truncated or padded here).

    Example:
        >>> DocumentCollator()([{"input_ids": [1, 2, 3], "label": 1}])
        {'documents': [[1, 2, 3]], 'labels': tensor([1])}
    """

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {"documents": [list(f["input_ids"]) for f in features]}
        key = "labels" if "labels" in features[0] else "label" if "label" in features[0] else None
        if key is not None:
            batch["labels"] = _labels_tensor([f[key] for f in features])
        return batch
