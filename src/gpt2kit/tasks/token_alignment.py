"""Word-level labels <-> BPE pieces, for token classification (NER, POS tagging).

Datasets label words; GPT-2 splits a word into one or more byte-level BPE pieces. The
tokenizer's `word_ids(i)` says which word each piece came from (None for padding); these
helpers use it to put labels on pieces for training and to turn piece predictions back
into one label per word.

A causal model sees only the left context, so the *last* piece of a word has read the
whole word; the conventional choice is still the first piece (as BERT recipes do), and
both are offered: `label_pieces="first" | "last" | "all"`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

IGNORE = -100
PIECE_CHOICES = ("first", "last", "all")
STRATEGIES = ("first", "last", "average", "max")


def align_labels_with_tokens(
    word_ids: Sequence[int | None],
    word_labels: Sequence[int],
    label_pieces: str = "first",
    b_to_i: Mapping[int, int] | None = None,
) -> list[int]:
    """One label per token: the word's label on the chosen piece(s), `-100` elsewhere.

    Args:
        word_ids: word index of each token (`encoding.word_ids(i)`), None for padding.
        word_labels: one class id per word.
        label_pieces: `"first"` (default) or `"last"` piece of each word carries the
            label, or `"all"` pieces do.
        b_to_i: with `"all"`, relabel the continuation pieces of a `B-X` word as `I-X`
            (`{id of B-X: id of I-X}`), so an entity still begins exactly once.

    Example:
        >>> align_labels_with_tokens([0, 1, 1, None], [3, 1])
        [3, 1, -100, -100]
        >>> align_labels_with_tokens([0, 1, 1, None], [3, 1], "all", b_to_i={1: 2})
        [3, 1, 2, -100]
    """
    if label_pieces not in PIECE_CHOICES:
        raise ValueError(f"label_pieces must be one of {PIECE_CHOICES}, got {label_pieces!r}")
    n_words = 1 + max((w for w in word_ids if w is not None), default=-1)
    if n_words > len(word_labels):
        raise ValueError(
            f"the tokens come from {n_words} words but {len(word_labels)} labels were given; "
            "pass one label per word"
        )
    labels = []
    for t, w in enumerate(word_ids):
        if w is None:
            labels.append(IGNORE)
            continue
        first = t == 0 or word_ids[t - 1] != w
        last = t == len(word_ids) - 1 or word_ids[t + 1] != w
        if label_pieces == "all":
            lab = word_labels[w]
            labels.append(b_to_i.get(lab, lab) if b_to_i and not first else lab)
        else:
            keep = first if label_pieces == "first" else last
            labels.append(word_labels[w] if keep else IGNORE)
    return labels


def tokenize_and_align_labels(
    tokenizer: Any,
    words: Sequence[Sequence[str]],
    word_labels: Sequence[Sequence[int]] | None = None,
    *,
    label_pieces: str = "first",
    b_to_i: Mapping[int, int] | None = None,
    max_length: int | None = None,
    padding_side: str = "right",
) -> Any:
    """Tokenize pre-split sentences and add piece-level `labels`, padded, as tensors.

    Returns the tokenizer's `BatchEncoding` (`input_ids`, `attention_mask`, `labels`
    `[B, T]` when `word_labels` are given); its `word_ids(i)` maps predictions back
    (`word_predictions`). Words cut off by `max_length` lose their labels.

    Example:
        >>> from gpt2kit.tokenizer import GPT2Tokenizer
        >>> enc = tokenize_and_align_labels(GPT2Tokenizer(), [["New-York", "is"]], [[1, 0]])
        >>> enc["labels"].tolist()
        [[1, -100, -100, 0]]
    """
    if word_labels is not None:
        if len(word_labels) != len(words):
            raise ValueError(f"{len(words)} sentences but {len(word_labels)} label lists")
        for i, (w, lab) in enumerate(zip(words, word_labels)):
            if len(w) != len(lab):
                raise ValueError(
                    f"sentence {i} has {len(w)} words but {len(lab)} labels; pass one per word"
                )
    enc = tokenizer(
        [list(w) for w in words],
        is_split_into_words=True,
        padding=True,
        truncation=max_length is not None,
        max_length=max_length,
        padding_side=padding_side,
        return_tensors="pt",
    )
    if word_labels is not None:
        rows = [
            align_labels_with_tokens(enc.word_ids(i), lab, label_pieces, b_to_i)
            for i, lab in enumerate(word_labels)
        ]
        enc["labels"] = torch.tensor(rows, dtype=torch.long)
    return enc


def word_predictions(
    word_ids: Sequence[int | None],
    logits: torch.Tensor,
    strategy: str = "first",
) -> list[int | None]:
    """One class id per word from per-token `logits [T, K]`.

    `strategy`: `"first"`/`"last"` piece decides; `"average"` of the pieces'
    probabilities; `"max"`: the piece with the most confident prediction decides. Words
    without any token (cut off by truncation) get None.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [9.0, 0.0]])
        >>> word_predictions([0, 1, 1, None], logits, "first"), word_predictions([0, 1, 1, None], logits, "average")
        ([0, 1], [0, 1])
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if logits.dim() != 2 or logits.shape[0] != len(word_ids):
        raise ValueError(
            f"logits must be [tokens={len(word_ids)}, classes]; got {tuple(logits.shape)}"
        )
    probs = logits.float().softmax(-1)
    pieces: dict[int, list[int]] = {}
    for t, w in enumerate(word_ids):
        if w is not None:
            pieces.setdefault(w, []).append(t)
    n_words = 1 + max(pieces, default=-1)
    out: list[int | None] = [None] * n_words
    for w, ts in pieces.items():
        p = probs[ts]  # (pieces, K)
        if strategy == "first":
            out[w] = int(p[0].argmax())
        elif strategy == "last":
            out[w] = int(p[-1].argmax())
        elif strategy == "average":
            out[w] = int(p.mean(0).argmax())
        else:
            out[w] = int(p[p.max(-1).values.argmax()].argmax())
    return out


def reading_pieces(word_ids: Sequence[int | None], label_pieces: str = "first") -> dict[int, int]:
    """`{word index: the piece whose prediction is the word's}`: its first piece (`"first"`,
    `"all"`) or its last (`"last"`), the piece that carries the word's label in training.

    Example:
        >>> reading_pieces([0, 1, 1, 2]), reading_pieces([0, 1, 1, 2], "last")
        ({0: 0, 1: 1, 2: 3}, {0: 0, 1: 2, 2: 3})
    """
    out: dict[int, int] = {}
    for t, w in enumerate(word_ids):
        if w is None:
            continue
        if label_pieces == "last" or w not in out:
            out[w] = t
    return out


def window_spans(
    word_ids: Sequence[int | None], max_length: int, stride: int
) -> list[tuple[int, int, int]]:
    """Cut one sentence's pieces into windows the model can read: `(start, score_from, end)`.

    A window holds pieces `[start, end)`, at most `max_length`; it scores (carries labels
    for, and is read for) the pieces `[score_from, end)`; the pieces before `score_from`
    are left context, at most `stride` of them, so a causal model reads each scored piece
    with context. Every piece is scored in exactly one window, so a sentence of any length
    is scored whole. Window ends fall on word starts (no word is split) unless one word is
    longer than the window. `stride` is the overlap, as QA's `doc_stride`.

    Example:
        >>> window_spans([0, 1, 2, 3, 4, 5], 4, 2)
        [(0, 0, 4), (2, 4, 6)]
        >>> window_spans([0, 0, 1, 1, 2, 2], 3, 2)   # ends fall on word starts
        [(0, 0, 2), (2, 2, 4), (4, 4, 6)]
        >>> window_spans([0, 1, 2, 2, 3, 4], 4, 2)
        [(0, 0, 4), (2, 4, 6)]
    """
    if max_length < 1:
        raise ValueError(f"max_length={max_length}; use a positive number of pieces")
    if not 0 <= stride < max_length:
        raise ValueError(f"stride={stride} must be in [0, max_length={max_length})")
    n = len(word_ids)
    if n <= max_length:
        return [(0, 0, n)]
    starts = [t for t in range(n) if t == 0 or word_ids[t] != word_ids[t - 1]]
    windows: list[tuple[int, int, int]] = []
    start = score_from = 0
    while True:
        end = min(start + max_length, n)
        if end < n:
            # back off to the last word start inside the window, if it still scores something
            inside = [s for s in starts if score_from < s <= end]
            if inside:
                end = inside[-1]
        windows.append((start, score_from, end))
        if end >= n:
            return windows
        score_from = end
        # the most context (<= stride pieces, from a word start) that leaves room for the
        # next whole word
        word_end = next((s for s in starts if s > score_from), n)
        context = [
            s
            for s in starts
            if score_from - stride <= s <= score_from and word_end - s <= max_length
        ]
        start = context[0] if context else score_from


class TokenWindowCollator:
    """Pad token-classification windows (`{"input_ids", "labels"}` id lists) into a batch:
    right padding, `attention_mask`, labels `-100` on pads.

    Example:
        >>> TokenWindowCollator(0)([{"input_ids": [5, 6], "labels": [1, -100]}, {"input_ids": [7], "labels": [0]}])["labels"].tolist()
        [[1, -100], [0, -100]]
    """

    def __init__(self, pad_token_id: int = 0) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
        for r, f in enumerate(features):
            n = len(f["input_ids"])
            ids[r, :n] = torch.as_tensor(list(f["input_ids"]), dtype=torch.long)
            mask[r, :n] = 1
            if "labels" in f:
                labels[r, :n] = torch.as_tensor(list(f["labels"]), dtype=torch.long)
        batch = {"input_ids": ids, "attention_mask": mask}
        if all("labels" in f for f in features):
            batch["labels"] = labels
        return batch
