"""Sequence-to-sequence data: collators for (source, target) pairs, prompts, and output trimming.

Two layouts:
- decoder-only (`Seq2SeqCollator`, for `GPT2ForSequenceToSequence`): one sequence
  `source <sep> target <eos>`; the loss is on `target <eos>` only (labels `-100` on the
  source, the separator and pads).
- encoder-decoder (`EncoderDecoderCollator`, for `GPT2ForConditionalGeneration`): the source
  goes to the encoder (`input_ids`); the decoder reads `decoder_input_ids = <start> target`
  and predicts the unshifted `labels = target <eos>` (`transformers`' layout).

Both pad dynamically (to the longest item of the batch) with an attention mask, so the pad
id never matters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

Pair = tuple[Sequence[int], Sequence[int]] | Mapping[str, Sequence[int]]


def _pair(item: Pair) -> tuple[list[int], list[int]]:
    if isinstance(item, Mapping):
        try:
            return list(item["source_ids"]), list(item["target_ids"])
        except KeyError as err:
            raise ValueError(
                f"a seq2seq example needs 'source_ids' and 'target_ids'; got keys {sorted(item)}"
            ) from err
    source, target = item
    return [int(t) for t in source], [int(t) for t in target]


def pad_sequences(
    seqs: Sequence[Sequence[int]], pad_value: int, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id lists to one `[B, T]` tensor; returns `(ids, attention_mask)`.

    Example:
        >>> ids, mask = pad_sequences([[1, 2, 3], [4]], pad_value=0, side="left")
        >>> ids.tolist(), mask.tolist()
        ([[1, 2, 3], [0, 0, 4]], [[1, 1, 1], [0, 0, 1]])
    """
    if side not in ("left", "right"):
        raise ValueError(f"padding side {side!r} must be 'left' or 'right'")
    T = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), T), pad_value, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for r, s in enumerate(seqs):
        if not len(s):
            continue
        cols = slice(T - len(s), T) if side == "left" else slice(0, len(s))
        ids[r, cols] = torch.as_tensor(list(s), dtype=torch.long)
        mask[r, cols] = 1
    return ids, mask


@dataclass
class Seq2SeqCollator:
    """Decoder-only batches: `source <sep> target <eos>`, loss on `target <eos>` only.

    Args:
        sep_token_id: separates source from target (GPT-2 has no SEP; EOS works).
        eos_token_id: ends the target; generation stops on it.
        pad_token_id: filler for pads (masked, so any id works).
        max_length: if set, sources are cut (from the end) so each sequence fits; a target
            that alone does not fit is a `ValueError`.
        padding_side: `right` for training (default); `left` puts every separator at the end.

    Example:
        >>> batch = Seq2SeqCollator(sep_token_id=9, eos_token_id=9)([([1, 2], [3]), ([4], [5, 6])])
        >>> batch["input_ids"].tolist()
        [[1, 2, 9, 3, 9], [4, 9, 5, 6, 9]]
        >>> batch["labels"].tolist()
        [[-100, -100, -100, 3, 9], [-100, -100, 5, 6, 9]]
    """

    sep_token_id: int
    eos_token_id: int
    pad_token_id: int = 0
    max_length: int | None = None
    padding_side: str = "right"

    def __call__(self, examples: Sequence[Pair]) -> dict[str, torch.Tensor]:
        seqs, labels = [], []
        for i, item in enumerate(examples):
            source, target = _pair(item)
            tail = [*target, self.eos_token_id]
            if self.max_length is not None:
                room = self.max_length - len(tail) - 1
                if room < 0:
                    raise ValueError(
                        f"example {i}: the target ({len(target)} tokens + eos + sep) does not fit "
                        f"max_length={self.max_length}; raise max_length or shorten the target"
                    )
                source = source[:room]
            seqs.append([*source, self.sep_token_id, *tail])
            labels.append([-100] * (len(source) + 1) + tail)
        ids, mask = pad_sequences(seqs, self.pad_token_id, self.padding_side)
        lab, _ = pad_sequences(labels, -100, self.padding_side)
        return {"input_ids": ids, "attention_mask": mask, "labels": lab}


@dataclass
class EncoderDecoderCollator:
    """Encoder-decoder batches in `transformers`' layout (`EncoderDecoderModel`,
    `DataCollatorForSeq2Seq`): the source for the encoder, the target for the decoder.

    Returns `input_ids`, `attention_mask` (the source, right-padded), `labels` (`target
    <eos>`, UNshifted, `-100` on pads), `decoder_input_ids` (`<start> target`: the labels
    shifted right) and `decoder_attention_mask`. The model needs no shifting and no pad id:
    the decoder inputs are given, and position t predicts `labels[:, t]`.

    Example:
        >>> c = EncoderDecoderCollator(decoder_start_token_id=8, eos_token_id=9)
        >>> b = c([([1, 2, 3], [4]), ([5], [6, 7])])
        >>> b["input_ids"].tolist(), b["decoder_input_ids"].tolist(), b["labels"].tolist()
        ([[1, 2, 3], [5, 0, 0]], [[8, 4, 0], [8, 6, 7]], [[4, 9, -100], [6, 7, 9]])
    """

    decoder_start_token_id: int
    eos_token_id: int
    pad_token_id: int = 0
    max_source_length: int | None = None
    max_target_length: int | None = None

    def __call__(self, examples: Sequence[Pair]) -> dict[str, torch.Tensor]:
        sources, decoder, labels = [], [], []
        for item in examples:
            source, target = _pair(item)
            if self.max_source_length is not None:
                source = source[: self.max_source_length]
            if self.max_target_length is not None:
                target = target[: self.max_target_length]
            sources.append(source)
            decoder.append([self.decoder_start_token_id, *target])
            labels.append([*target, self.eos_token_id])
        enc_ids, enc_mask = pad_sequences(sources, self.pad_token_id)
        ids, mask = pad_sequences(decoder, self.pad_token_id)
        lab, _ = pad_sequences(labels, -100)
        return {
            "input_ids": enc_ids,
            "attention_mask": enc_mask,
            "decoder_input_ids": ids,
            "decoder_attention_mask": mask,
            "labels": lab,
        }


def shift_tokens_right(
    labels: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int | None
) -> torch.Tensor:
    """Decoder inputs from unshifted `labels [B, T]`: start token first, `-100` -> pad id.

    `transformers`' `shift_tokens_right` (same errors: both ids must be set).

    Example:
        >>> shift_tokens_right(torch.tensor([[4, 5, 9, -100]]), 0, 8).tolist()
        [[8, 4, 5, 9]]
    """
    if decoder_start_token_id is None:
        raise ValueError(
            "Make sure to set the decoder_start_token_id attribute of the model's "
            "configuration (config.decoder_start_token_id): the decoder inputs are the labels "
            "shifted right behind it. Or pass decoder_input_ids"
        )
    if pad_token_id is None:
        raise ValueError(
            "Make sure to set the pad_token_id attribute of the model's configuration "
            "(config.pad_token_id): it replaces -100 in the shifted labels. Or pass "
            "decoder_input_ids"
        )
    shifted = labels.new_zeros(labels.shape)
    shifted[:, 1:] = labels[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == -100, pad_token_id)


def as_id_lists(
    sources: Any, attention_mask: torch.Tensor | None = None
) -> tuple[list[list[int]], bool]:
    """Normalize sources (one id list, a list of id lists, or a `[B, T]` tensor with optional
    mask) to a list of id lists; also says whether a single source was given."""
    if isinstance(sources, torch.Tensor):
        if sources.dim() == 1:
            return [sources.tolist()], True
        if attention_mask is None:
            return sources.tolist(), False
        return [row[m.bool()].tolist() for row, m in zip(sources, attention_mask)], False
    sources = list(sources)
    if sources and not isinstance(sources[0], (Sequence, torch.Tensor)):
        return [[int(t) for t in sources]], True
    return [[int(t) for t in s] for s in sources], False


def check_target_generation_kwargs(gen_kwargs: dict) -> None:
    """Reject options whose result the target-only `generate` of seq2seq models cannot return.

    Those `generate_target` methods return lists of target ids; per-step scores belong to
    the whole decoded rows, which the models' `generate(input_ids, ...)` returns.
    """
    if gen_kwargs.get("return_dict_in_generate"):
        raise ValueError(
            "model.generate_target(sources) returns target ids only; for scores/logits call "
            "model.generate(input_ids, return_dict_in_generate=True, ...) (or "
            "gpt2kit.generation.generate) on the prepared input"
        )


def trim_generated(
    new_tokens: torch.Tensor, eos_token_id: int | Sequence[int] | None
) -> list[list[int]]:
    """Generated ids `[B, N]` -> one list per row, cut before the first EOS.

    Example:
        >>> trim_generated(torch.tensor([[4, 5, 9, 9], [6, 9, 7, 7]]), 9)
        [[4, 5], [6]]
    """
    stops = (
        set()
        if eos_token_id is None
        else {eos_token_id}
        if isinstance(eos_token_id, int)
        else set(eos_token_id)
    )
    out = []
    for row in new_tokens.tolist():
        cut = next((j for j, t in enumerate(row) if t in stops), len(row))
        out.append(row[:cut])
    return out
