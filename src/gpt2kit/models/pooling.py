"""Pooling: one vector per sequence (or per choice / window) from hidden states `[..., T, d]`.

Every function takes the attention mask (1 = real token), never `pad_token_id`: a pad id
equal to EOS, or left padding, cannot fool it.
"""

from __future__ import annotations

import torch
from torch import nn


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row of `attention_mask [..., T]` (left or right pad)."""
    T = attention_mask.shape[-1]
    positions = torch.arange(T, device=attention_mask.device)
    return (positions * attention_mask.bool()).argmax(-1)


def gather_index(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`hidden [..., T, d]` at `index [...]` -> `[..., d]`."""
    idx = index.long()[..., None, None].expand(*index.shape, 1, hidden.shape[-1])
    return hidden.gather(-2, idx).squeeze(-2)


def pool_last(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The hidden state of the last real token (the one that has read the whole text)."""
    if attention_mask is None:
        return hidden[..., -1, :]
    return gather_index(hidden, last_token_index(attention_mask))


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
