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
