"""Pooling: one vector per sequence (or per choice / window) from hidden states `[..., T, d]`.

Every function takes the attention mask (1 = real token), never `pad_token_id`: a pad id
equal to EOS, or left padding, cannot fool it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..nn.activations import ACT_FNS


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row of `attention_mask [..., T]` (left or right pad)."""
    T = attention_mask.shape[-1]
    positions = torch.arange(T, device=attention_mask.device)
    return (positions * attention_mask.bool()).argmax(-1)


def last_token_without_mask(
    config: Any, input_ids: torch.Tensor | None, batch: int, T: int
) -> torch.Tensor:
    """`transformers`' rule when no attention_mask is given: the rightmost non-pad id.

    Without `pad_token_id` (or with `inputs_embeds`) only the last position is safe, and
    only for a batch of one, since a batch of several may be padded.
    """
    if config.pad_token_id is None:
        if batch != 1:
            raise ValueError(
                "cannot find the last token of each row: pass attention_mask (1 = real token), "
                "or set config.pad_token_id, for a batch of more than one sequence"
            )
        return torch.full((batch,), T - 1, dtype=torch.long)
    if input_ids is None:
        return torch.full((batch,), T - 1, dtype=torch.long)
    return last_token_index(input_ids != config.pad_token_id)


def last_token(
    config: Any,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    batch: int,
    T: int,
) -> torch.Tensor:
    """`[batch]` index of each row's last real token among the `T` new positions: from a
    2-D `attention_mask` (with a cache it covers past + new tokens, the new ones its last
    `T`), else by `last_token_without_mask`."""
    if attention_mask is not None and attention_mask.dim() == 2:
        return last_token_index(attention_mask[:, -T:])
    return last_token_without_mask(config, input_ids, batch, T)


def classifier_dropout(config: Any) -> nn.Dropout:
    """Dropout at `classifier_dropout`, else `hidden_dropout`, else 0.1 (the `transformers`
    rule of the token-classification and multiple-choice heads)."""
    for key in CLASSIFIER_DROPOUT_OPTIONS:
        if config.get(key) is not None:
            return nn.Dropout(float(config.get(key)))
    return nn.Dropout(0.1)


# The config keys `classifier_dropout` reads (`config_options` of the heads that use it:
# from_pretrained accepts them).
CLASSIFIER_DROPOUT_OPTIONS = ("classifier_dropout", "hidden_dropout")


def gather_index(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`hidden [..., T, d]` at `index [...]` -> `[..., d]`."""
    idx = index.long()[..., None, None].expand(*index.shape, 1, hidden.shape[-1])
    return hidden.gather(-2, idx).squeeze(-2)


def pool_last(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The hidden state of the last real token (the one that has read the whole text)."""
    if attention_mask is None:
        return hidden[..., -1, :]
    return gather_index(hidden, last_token_index(attention_mask))


def pool_at(
    hidden: torch.Tensor, index: torch.Tensor | None, attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """`hidden [..., T, d]` at `index [...]` when given (`mc_token_ids`, `cls_index`), else
    at the last real token."""
    if index is None:
        return pool_last(hidden, attention_mask)
    return gather_index(hidden, index.to(hidden.device))


def pool_mean(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over real tokens."""
    if attention_mask is None:
        return hidden.mean(-2)
    m = attention_mask.to(hidden.dtype)[..., None]
    return (hidden * m).sum(-2) / m.sum(-2).clamp(min=1.0)


def pool_max(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Element-wise max over real tokens."""
    if attention_mask is None:
        return hidden.amax(-2)
    m = attention_mask.bool()[..., None]
    return hidden.masked_fill(~m, torch.finfo(hidden.dtype).min).amax(-2)


class AttentionPooling(nn.Module):
    """Learned attention pooling: softmax(w . h_t) weights over the real items.

    Example:
        >>> pool = AttentionPooling(8)
        >>> pool(torch.randn(2, 5, 8), torch.ones(2, 5)).shape
        torch.Size([2, 8])
    """

    def __init__(self, d: int):
        super().__init__()
        self.query = nn.Linear(d, 1)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        scores = self.query(hidden).squeeze(-1)  # (..., T)
        if mask is not None:
            scores = scores.masked_fill(~mask.bool(), torch.finfo(scores.dtype).min)
        weights = scores.softmax(-1)
        return (weights[..., None] * hidden).sum(-2)


POOLERS = {"last": pool_last, "mean": pool_mean, "max": pool_max}


def first_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the first real token of each row of `attention_mask [..., T]` (left or right pad)."""
    return attention_mask.bool().int().argmax(-1)


class SequenceSummary(nn.Module):
    """GPT-2's multiple-choice summary (`transformers`' `GPT2SequenceSummary`), mask-aware.

    Reads the `summary_*` config fields: `summary_type` picks the vector (`cls_index`: the
    token at `cls_index`, by default the last real token; `last`, `first`, `mean` over real
    tokens), then `summary_first_dropout`, the `summary` projection (`summary_use_proj`;
    to `num_labels` outputs when `summary_proj_to_labels`, else to `n_embd`),
    `summary_activation` and `summary_last_dropout`. Without a mask it computes exactly what
    `transformers` does; with one, padding never moves the pooled position.

    Example:
        >>> from gpt2kit.config import GPT2Config
        >>> s = SequenceSummary(GPT2Config(n_layer=1, n_embd=8, n_head=2, num_labels=1))
        >>> s(torch.randn(2, 3, 5, 8)).shape          # [B, C, T, d] -> [B, C, 1]
        torch.Size([2, 3, 1])
    """

    def __init__(self, config) -> None:
        super().__init__()
        self.summary_type = config.summary_type
        if self.summary_type not in ("cls_index", "last", "first", "mean"):
            raise ValueError(
                f"summary_type {self.summary_type!r} is not supported; use cls_index, last, first or mean"
            )
        self.summary: nn.Module = nn.Identity()
        if config.summary_use_proj:
            to_labels = config.summary_proj_to_labels and config.num_labels > 0
            out = config.num_labels if to_labels else config.n_embd
            self.summary = nn.Linear(config.n_embd, out)
        act = config.summary_activation
        if act and act not in ACT_FNS:
            raise ValueError(
                f"summary_activation {act!r} is not supported; use one of {', '.join(ACT_FNS)}"
            )
        self.activation = ACT_FNS[act] if act else (lambda x: x)
        self.first_dropout = nn.Dropout(config.summary_first_dropout or 0.0)
        self.last_dropout = nn.Dropout(config.get("summary_last_dropout", 0.0) or 0.0)

    def forward(
        self,
        hidden: torch.Tensor,
        cls_index: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`hidden [..., T, d]`, `cls_index [...]`, `attention_mask [..., T]` -> `[..., out]`."""
        if self.summary_type == "cls_index":
            x = pool_at(hidden, cls_index, attention_mask)
        elif self.summary_type == "last":
            x = pool_last(hidden, attention_mask)
        elif self.summary_type == "first":
            if attention_mask is None:
                x = hidden[..., 0, :]
            else:
                x = gather_index(hidden, first_token_index(attention_mask))
        else:
            x = pool_mean(hidden, attention_mask)
        return self.last_dropout(self.activation(self.summary(self.first_dropout(x))))
