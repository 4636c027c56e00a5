"""Batches for `GPT2ForMultipleChoice` / `GPT2DoubleHeadsModel`: `[B, C, T]` from
(context, choices) pairs, as text or as token ids.

Each row is `context + separator + choice`; the model scores a choice at its last real
token (`mc_token_ids`), which has read the context and the whole choice. When a row is too
long the *beginning of the context* is dropped: the choice and the context right before it
matter most to a left-to-right reader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch


class MultipleChoiceCollator:
    """Collate examples into `input_ids`, `attention_mask [B, C, T]`, `mc_token_ids [B, C]`
    and `labels [B]` (when examples carry `label`).

    An example is a mapping with either text, `{"context": str, "choices": [str, ...]}`
    (needs `tokenizer`), or ids, `{"context_ids": [int], "choice_ids": [[int], ...]}`, or
    whole rows, `{"input_ids": [[int], ...]}` (one per choice); plus optional `"label"`.
    Every example of a batch must have the same number of choices.

    Args:
        tokenizer: a `GPT2Tokenizer`, for text examples.
        pad_token_id: pad id; default the tokenizer's pad id, else 0 (pads are masked).
        max_length: longest row; longer rows lose context tokens from the left.
        separator: text put between context and choice (text examples).
        padding_side: `"right"` (default) or `"left"`.

    Example:
        >>> collate = MultipleChoiceCollator(pad_token_id=0)
        >>> batch = collate([{"context_ids": [5, 6], "choice_ids": [[7], [8, 9]], "label": 1}])
        >>> batch["input_ids"].tolist(), batch["mc_token_ids"].tolist(), batch["labels"].tolist()
        ([[[5, 6, 7, 0], [5, 6, 8, 9]]], [[2, 3]], [1])
    """

    def __init__(
        self,
        tokenizer: Any = None,
        pad_token_id: int | None = None,
        max_length: int | None = None,
        separator: str = " ",
        padding_side: str = "right",
    ) -> None:
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        self.tokenizer = tokenizer
        if pad_token_id is None:
            pad_token_id = getattr(tokenizer, "pad_token_id", None)
        self.pad_token_id = 0 if pad_token_id is None else pad_token_id
        self.max_length = max_length
        self.separator = separator
        self.padding_side = padding_side

    def _encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            raise ValueError(
                "text examples need a tokenizer: MultipleChoiceCollator(tokenizer=...)"
            )
        return list(self.tokenizer.encode(text))

    def rows(self, example: Mapping[str, Any], index: int = 0) -> list[list[int]]:
        """The token ids of each choice row of one example (truncated)."""
        if "input_ids" in example:
            rows = [list(r) for r in example["input_ids"]]
        elif "choice_ids" in example:
            rows = [list(example.get("context_ids", [])) + list(c) for c in example["choice_ids"]]
        elif "choices" in example:
            ctx = self._encode(example.get("context", ""))
            rows = [
                ctx + self._encode(self.separator + c if example.get("context") else c)
                for c in example["choices"]
            ]
        else:
            raise ValueError(
                f"example {index} has none of 'choices' (text), 'choice_ids' or 'input_ids'; "
                f"got keys {sorted(example)}"
            )
        if not rows or any(not r for r in rows):
            raise ValueError(f"example {index} has no choices, or an empty one")
        if self.max_length is not None:
            rows = [r[-self.max_length :] for r in rows]  # drop the context's start
        return rows

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        all_rows = [self.rows(ex, i) for i, ex in enumerate(examples)]
        C = len(all_rows[0])
        for i, rows in enumerate(all_rows):
            if len(rows) != C:
                raise ValueError(
                    f"example {i} has {len(rows)} choices but example 0 has {C}; batch examples "
                    "with the same number of choices"
                )
        B, T = len(all_rows), max(len(r) for rows in all_rows for r in rows)
        ids = torch.full((B, C, T), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros(B, C, T, dtype=torch.long)
        last = torch.zeros(B, C, dtype=torch.long)
        for b, rows in enumerate(all_rows):
            for c, r in enumerate(rows):
                lo = 0 if self.padding_side == "right" else T - len(r)
                ids[b, c, lo : lo + len(r)] = torch.tensor(r)
                mask[b, c, lo : lo + len(r)] = 1
                last[b, c] = lo + len(r) - 1
        batch = {"input_ids": ids, "attention_mask": mask, "mc_token_ids": last}
        if all("label" in ex for ex in examples):
            labels = [int(ex["label"]) for ex in examples]
            bad = [lab for lab in labels if not 0 <= lab < C]
            if bad:
                raise ValueError(f"labels must be choice indices in [0, {C}); got {bad}")
            batch["labels"] = torch.tensor(labels)
        return batch
